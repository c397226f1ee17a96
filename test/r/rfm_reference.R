#!/usr/bin/env Rscript
# rfm_reference.R -- reference RFM scorer for the audience-sync cross-check.
#
# Re-states, in base R, the quantile scoring of the R `rfm` package
# (rfm_table_order / rfm_table_customer(_2) + rfm_segment) so that the
# TypeScript implementation can be compared with it bit for bit.
# See test/r/README.md for the mapping to the package and the fixture list.
#
# Usage:
#   Rscript test/r/rfm_reference.R --input FILE --shape orders|customers \
#     --analysis-date YYYY-MM-DD --segments default|rules --out FILE
#
# Writes FILE (one row per customer, sorted by customer_id in byte order) and
# FILE.breaks.json (the 4 interior breaks of each dimension).
#
# Only base R (+ stats/utils) is used.  Per-customer totals use base::sum(),
# which accumulates doubles in long double (80-bit x87 on x86_64) and rounds to
# double once at the end -- the same thing dplyr::summarise(sum(...)) does in
# the package.  Amounts are summed in input-file row order.

options(warn = 2, stringsAsFactors = FALSE)

N_BINS <- 5L

# ---------------------------------------------------------------- arguments --

usage <- function() {
  paste(
    "usage: Rscript rfm_reference.R --input FILE --shape orders|customers",
    "--analysis-date YYYY-MM-DD --segments default|rules --out FILE"
  )
}

die <- function(...) {
  cat("rfm_reference.R: ", ..., "\n", sep = "", file = stderr())
  quit(status = 2, save = "no")
}

parse_args <- function(argv) {
  wanted <- c("input", "shape", "analysis-date", "segments", "out")
  opts <- list()
  i <- 1L
  while (i <= length(argv)) {
    a <- argv[[i]]
    if (a %in% c("-h", "--help")) {
      cat(usage(), "\n")
      quit(status = 0, save = "no")
    }
    if (!startsWith(a, "--")) die("unexpected argument '", a, "'\n", usage())
    key <- substring(a, 3L)
    val <- NULL
    if (grepl("=", key, fixed = TRUE)) {
      val <- sub("^[^=]*=", "", key)
      key <- sub("=.*$", "", key)
    } else {
      if (i == length(argv)) die("missing value for --", key)
      i <- i + 1L
      val <- argv[[i]]
    }
    if (!key %in% wanted) die("unknown option --", key, "\n", usage())
    opts[[key]] <- val
    i <- i + 1L
  }
  missing <- setdiff(wanted, names(opts))
  if (length(missing)) die("missing option(s): ", paste0("--", missing, collapse = " "), "\n", usage())
  if (!opts$shape %in% c("orders", "customers")) die("--shape must be orders or customers")
  if (!opts$segments %in% c("default", "rules")) die("--segments must be default or rules")
  opts
}

# ------------------------------------------------------------------- input --

parse_date_strict <- function(x, what) {
  d <- as.Date(x, format = "%Y-%m-%d")
  bad <- is.na(d) | format(d, "%Y-%m-%d") != x
  if (any(bad)) die("invalid ", what, " '", x[which(bad)[1L]], "' (want YYYY-MM-DD)")
  d
}

parse_number_strict <- function(x, what) {
  # as.numeric() is the same converter (R_strtod) read.csv() uses for numeric
  # columns.  Reject anything that is not a finite number.
  v <- suppressWarnings(as.numeric(x))
  bad <- is.na(v) | !is.finite(v)
  if (any(bad)) die("invalid ", what, " '", x[which(bad)[1L]], "'")
  v
}

read_input <- function(path, shape) {
  expected <- if (shape == "orders") {
    c("customer_id", "order_date", "amount")
  } else {
    c("customer_id", "last_order_date", "order_count", "total_revenue")
  }
  if (!file.exists(path)) die("no such file: ", path)
  # Everything is read as character (ids must never become numbers; "NA"
  # is an ordinary id), then converted explicitly.
  d <- utils::read.csv(path,
    colClasses = "character", na.strings = character(0),
    check.names = FALSE, strip.white = FALSE, encoding = "UTF-8",
    quote = "\"", comment.char = "", blank.lines.skip = TRUE
  )
  if (!identical(names(d), expected)) {
    die(
      "header of ", path, " is '", paste(names(d), collapse = ","),
      "', expected '", paste(expected, collapse = ","), "'"
    )
  }
  if (nrow(d) == 0L) die("no data rows in ", path)
  ids <- enc2utf8(d$customer_id)
  if (any(ids == "")) die("empty customer_id in ", path)
  if (shape == "orders") {
    list(
      customer_id = ids,
      order_date = parse_date_strict(d$order_date, "order_date"),
      amount = parse_number_strict(d$amount, "amount")
    )
  } else {
    if (anyDuplicated(ids)) die("duplicate customer_id '", ids[anyDuplicated(ids)], "' in customers input")
    list(
      customer_id = ids,
      last_order_date = parse_date_strict(d$last_order_date, "last_order_date"),
      order_count = parse_number_strict(d$order_count, "order_count"),
      total_revenue = parse_number_strict(d$total_revenue, "total_revenue")
    )
  }
}

# ------------------------------------------------- per-customer aggregation --

# rfm_table_order(): group by customer; date_most_recent = max(order_date),
# amount = sum(revenue) (long double accumulation, file order within the
# customer), transaction_count = n() (rows, refunds included).
aggregate_orders <- function(orders, analysis_date) {
  ids <- unique(orders$customer_id)
  g <- match(orders$customer_id, ids) # group index, rows keep file order
  amount <- vapply(split(orders$amount, g), base::sum, numeric(1), USE.NAMES = FALSE)
  last <- vapply(split(as.numeric(orders$order_date), g), max, numeric(1), USE.NAMES = FALSE)
  count <- tabulate(g, nbins = length(ids))
  last <- as.Date(last, origin = "1970-01-01")
  data.frame(
    customer_id = ids,
    recency_days = as.numeric(difftime(analysis_date, last, units = "days")),
    transaction_count = count,
    amount = amount
  )
}

# rfm_table_customer_2() (rfm_table_customer() with recency computed from the
# last order date): one row per customer, values taken as given.
aggregate_customers <- function(cust, analysis_date) {
  data.frame(
    customer_id = cust$customer_id,
    recency_days = as.numeric(difftime(analysis_date, cust$last_order_date, units = "days")),
    transaction_count = cust$order_count,
    amount = cust$total_revenue
  )
}

# ----------------------------------------------------------------- scoring --

# The package's bins(): type-7 quantiles at seq(0, 1, length.out = 6), first
# and last dropped, +1 added to each of the four interior ones.
interior_breaks <- function(x) {
  probs <- seq(0, 1, length.out = N_BINS + 1L)
  q <- stats::quantile(x, probs = probs, names = FALSE) # type = 7 (default)
  q[-c(1L, N_BINS + 1L)] + 1
}

# The package's bins_lower()/bins_upper() and its assignment loop: for i in
# 1..5, every value with lower[i] <= x < upper[i] gets score i (later bins
# overwrite earlier ones, which only matters if breaks ever decreased).
# Recency is reversed: bin i gets 6 - i.
score_dimension <- function(x, breaks, reverse = FALSE) {
  lower <- c(min(x), breaks)
  upper <- c(breaks, max(x) + 1)
  labels <- if (reverse) rev(seq_len(N_BINS)) else seq_len(N_BINS)
  score <- rep(NA_integer_, length(x))
  for (i in seq_len(N_BINS)) {
    score[x >= lower[i] & x < upper[i]] <- labels[i]
  }
  if (anyNA(score)) die("internal error: a value fell outside every bin")
  score
}

rfm_score <- function(tab) {
  br <- list(
    recency = interior_breaks(tab$recency_days),
    frequency = interior_breaks(tab$transaction_count),
    monetary = interior_breaks(tab$amount)
  )
  tab$r <- score_dimension(tab$recency_days, br$recency, reverse = TRUE)
  tab$f <- score_dimension(tab$transaction_count, br$frequency)
  tab$m <- score_dimension(tab$amount, br$monetary)
  tab$rfm_code <- tab$r * 100L + tab$f * 10L + tab$m
  list(table = tab, breaks = br)
}

# ---------------------------------------------------------------- segments --

# rfm_segment() with the package README's example rules, in this order.
# Inclusive bounds, first matching rule wins, no match -> "Others".
RULES <- data.frame(
  segment = c(
    "Champions", "Potential Loyalist", "Loyal Customers", "Promising",
    "New Customers", "Can't Lose Them", "At Risk", "Need Attention",
    "About To Sleep", "Lost"
  ),
  r_lo = c(5, 3, 2, 3, 4, 1, 1, 1, 2, 1), r_hi = c(5, 5, 4, 4, 5, 2, 2, 3, 3, 1),
  f_lo = c(5, 3, 2, 1, 1, 3, 2, 3, 1, 1), f_hi = c(5, 5, 4, 3, 3, 4, 5, 5, 3, 5),
  m_lo = c(5, 2, 2, 3, 1, 4, 4, 3, 1, 1), m_hi = c(5, 5, 4, 5, 5, 5, 5, 5, 4, 5)
)

segment_rules <- function(r, f, m) {
  seg <- rep(NA_character_, length(r))
  for (i in seq_len(nrow(RULES))) {
    hit <- is.na(seg) &
      r >= RULES$r_lo[i] & r <= RULES$r_hi[i] &
      f >= RULES$f_lo[i] & f <= RULES$f_hi[i] &
      m >= RULES$m_lo[i] & m <= RULES$m_hi[i]
    seg[hit] <- RULES$segment[i]
  }
  seg[is.na(seg)] <- "Others"
  seg
}

# audience-sync's default 11-segment code table (all 125 codes covered).
DEFAULT_CODES <- list(
  "Champions" = "555 554 544 545 454 455 445",
  "Loyal Customers" = "543 444 435 355 354 345 344 335",
  "Potential Loyalist" = paste(
    "553 551 552 541 542 533 532 531 452 451 442 441 431 453 433 432 423",
    "353 352 351 342 341 333 323"
  ),
  "New Customers" = "512 511 422 421 412 411 311",
  "Promising" = "525 524 523 522 521 515 514 513 425 424 413 414 415 315 314 313",
  "Need Attention" = "535 534 443 434 343 334 325 324",
  "About To Sleep" = "331 321 312 221 213",
  "At Risk" = paste(
    "255 254 245 244 253 252 243 242 235 234 225 224 153 152 145 143 142",
    "135 134 133 125 124"
  ),
  "Can't Lose Them" = "155 154 144 214 215 115 114 113",
  "Hibernating" = "332 322 231 241 251 233 232 223 222 132 123 122 212 211",
  "Lost" = "111 112 121 131 141 151"
)

default_code_map <- function() {
  codes <- character(0)
  segs <- character(0)
  for (s in names(DEFAULT_CODES)) {
    cs <- strsplit(DEFAULT_CODES[[s]], " ", fixed = TRUE)[[1L]]
    codes <- c(codes, cs)
    segs <- c(segs, rep(s, length(cs)))
  }
  if (anyDuplicated(codes)) die("internal error: duplicate code in default map")
  stats::setNames(segs, codes)
}

segment_default <- function(code) {
  map <- default_code_map()
  seg <- unname(map[as.character(code)])
  seg[is.na(seg)] <- "Others"
  seg
}

# ------------------------------------------------------------------ output --

# 17 significant digits: every double round-trips exactly.
fmt_num <- function(x) sprintf("%.17g", x)

csv_field <- function(x) {
  needs <- grepl("[\",\r\n]", x, useBytes = TRUE)
  x[needs] <- paste0("\"", gsub("\"", "\"\"", x[needs], fixed = TRUE), "\"")
  x
}

# strict byte-wise comparison of two UTF-8 strings (C-locale strcmp order)
bytes_before <- function(a, b) {
  ra <- as.integer(charToRaw(a))
  rb <- as.integer(charToRaw(b))
  n <- min(length(ra), length(rb))
  if (n > 0L) {
    d <- which(ra[seq_len(n)] != rb[seq_len(n)])
    if (length(d)) {
      return(ra[d[1L]] < rb[d[1L]])
    }
  }
  length(ra) < length(rb)
}

byte_order <- function(ids) {
  o <- order(ids, method = "radix") # radix sort = C-locale ordering
  s <- ids[o]
  # verify: the output contract is plain byte order, whatever R does
  for (k in seq_len(length(s) - 1L)) {
    if (!bytes_before(s[k], s[k + 1L])) die("internal error: ids not in byte order at '", s[k], "'")
  }
  o
}

write_lines_utf8 <- function(lines, path) {
  con <- file(path, open = "wb")
  on.exit(close(con))
  writeLines(enc2utf8(lines), con, sep = "\n", useBytes = TRUE)
}

write_outputs <- function(res, segments, out) {
  tab <- res$table
  o <- byte_order(tab$customer_id)
  tab <- tab[o, , drop = FALSE]
  header <- "customer_id,recency_days,frequency,monetary,r,f,m,rfm_code,segment"
  body <- paste(
    csv_field(tab$customer_id),
    fmt_num(tab$recency_days),
    fmt_num(tab$transaction_count),
    fmt_num(tab$amount),
    tab$r, tab$f, tab$m,
    sprintf("%d", tab$rfm_code),
    csv_field(segments[o]),
    sep = ","
  )
  write_lines_utf8(c(header, body), out)

  js_array <- function(v) paste0("[", paste(sprintf("%.17g", v), collapse = ","), "]")
  json <- paste0(
    "{\"recency\":", js_array(res$breaks$recency),
    ",\"frequency\":", js_array(res$breaks$frequency),
    ",\"monetary\":", js_array(res$breaks$monetary), "}"
  )
  write_lines_utf8(json, paste0(out, ".breaks.json"))
}

# -------------------------------------------------------------------- main --

main <- function() {
  opts <- parse_args(commandArgs(trailingOnly = TRUE))
  if (!isTRUE(l10n_info()[["UTF-8"]])) {
    die("run in a UTF-8 locale (e.g. LC_ALL=C.UTF-8); current: ", Sys.getlocale("LC_CTYPE"))
  }
  analysis_date <- parse_date_strict(opts[["analysis-date"]], "--analysis-date")
  input <- read_input(opts$input, opts$shape)
  tab <- if (opts$shape == "orders") {
    aggregate_orders(input, analysis_date)
  } else {
    aggregate_customers(input, analysis_date)
  }
  res <- rfm_score(tab)
  t <- res$table
  segments <- if (opts$segments == "rules") segment_rules(t$r, t$f, t$m) else segment_default(t$rfm_code)
  write_outputs(res, segments, opts$out)
  invisible(NULL)
}

if (sys.nframe() == 0L) main()
