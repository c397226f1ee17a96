import type { ConnectorDefinition } from '../src/connector.js';
import { fileConnector } from './file/index.js';

/** Every built-in connector by its `type`. A new platform is one folder and one line here. */
export const connectors: Readonly<Record<string, ConnectorDefinition<never>>> = {
  file: fileConnector as unknown as ConnectorDefinition<never>,
};
