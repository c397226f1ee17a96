export {
  BRANDS,
  CUSTOMERS_HEADER,
  DEFAULT_ANALYSIS_DATE,
  DEFAULT_OPT_OUT_SHARE,
  DEFAULT_ORDERS_PER_CUSTOMER,
  DEFAULT_SEED,
  HISTORY_DAYS,
  ORDERS_HEADER,
  generateShop,
  parseIsoDay,
  type ShopOptions,
  type ShopSummary,
} from './generate.js';
export { Rng } from './rng.js';
