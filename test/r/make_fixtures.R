#!/usr/bin/env Rscript
# make_fixtures.R -- writes the deterministic RFM fixture inputs.
#
#   Rscript test/r/make_fixtures.R [OUTDIR]     (default: test/fixtures/rfm)
#
# Every fixture has its own seed, so changing one does not move the others.
# Each edge-case fixture checks (stop()s otherwise) that it really exercises
# the case it was built for -- see test/r/README.md for the list.
# Analysis date for every fixture: 2026-01-01.

options(warn = 2, stringsAsFactors = FALSE)
suppressWarnings(RNGkind("Mersenne-Twister", "Inversion", "Rejection"))

args <- commandArgs(trailingOnly = TRUE)
OUT <- if (length(args) >= 1L) args[[1L]] else file.path("test", "fixtures", "rfm")
dir.create(OUT, recursive = TRUE, showWarnings = FALSE)
if (!isTRUE(l10n_info()[["UTF-8"]])) stop("run in a UTF-8 locale (LC_ALL=C.UTF-8)")

AD <- as.Date("2026-01-01")
PROBS_R <- seq(0, 1, length.out = 6) # what the package uses
PROBS_LITERAL <- c(0, 0.2, 0.4, 0.6, 0.8, 1) # 0.6 differs by one ulp

# ----------------------------------------------------------------- helpers --

cents_str <- function(c) {
  c <- as.integer(c)
  sprintf("%s%d.%02d", ifelse(c < 0L, "-", ""), abs(c) %/% 100L, abs(c) %% 100L)
}

fmt_date <- function(d) format(d, "%Y-%m-%d")

csv_quote <- function(x) {
  needs <- grepl("[\",\r\n]", x, useBytes = TRUE)
  x[needs] <- paste0("\"", gsub("\"", "\"\"", x[needs], fixed = TRUE), "\"")
  x
}

write_fixture <- function(df, name, max_rows = 5000L) {
  if (nrow(df) > max_rows) stop(name, ": ", nrow(df), " rows > ", max_rows)
  lines <- c(
    paste(names(df), collapse = ","),
    do.call(paste, c(lapply(df, function(col) csv_quote(as.character(col))), sep = ","))
  )
  path <- file.path(OUT, name)
  con <- file(path, open = "wb")
  on.exit(close(con))
  writeLines(enc2utf8(lines), con, sep = "\n", useBytes = TRUE)
  cat(sprintf("  %-32s %5d rows\n", name, nrow(df)))
}

# one order table from a list of customers; each element:
#   list(id=, dates=Date vector, amounts=character vector) in summation order
orders_df <- function(custs) {
  data.frame(
    customer_id = unlist(lapply(custs, function(c) rep(c$id, length(c$amounts)))),
    order_date = unlist(lapply(custs, function(c) fmt_date(c$dates))),
    amount = unlist(lapply(custs, function(c) c$amounts))
  )
}

# Shuffle rows across customers but keep each customer's rows in their
# original relative order (that order is the summation order).
shuffle_keep_within <- function(df) {
  key <- stats::runif(nrow(df))
  g <- match(df$customer_id, unique(df$customer_id))
  for (idx in split(seq_len(nrow(df)), g)) key[idx] <- sort(key[idx])
  df[order(key), , drop = FALSE]
}

# dates for k orders whose most recent one is `recency` days before AD
order_dates <- function(k, recency, spread = 365L) {
  last <- AD - recency
  if (k == 1L) {
    return(last)
  }
  earlier <- last - sort(sample(1:spread, k - 1L, replace = TRUE), decreasing = TRUE)
  c(earlier, last)
}

# --- the package's binning, used only for the self-checks below -----------
bin_scores <- function(x, probs = PROBS_R, reverse = FALSE) {
  b <- stats::quantile(x, probs, names = FALSE)[2:5] + 1
  lower <- c(min(x), b)
  upper <- c(b, max(x) + 1)
  s <- rep(NA_integer_, length(x))
  for (i in 1:5) s[x >= lower[i] & x < upper[i]] <- if (reverse) 6L - i else i
  s
}

# --- three ways of summing a customer's amounts -----------------------------
sum_ld <- function(v) sum(v) # R: long double accumulator, one final rounding
sum_fold <- function(v) Reduce(`+`, v) # plain double left fold
# Correctly rounded exact sum (what math.fsum / exact BigInt arithmetic give).
# Error-free two-sum into (s, e); e collects the rounding errors.  For the
# fixtures' inputs (<= 6 terms, |amount| < 2^20, cents) every error term is a
# multiple of 2^-59 below 2^-32, so e is itself exact and s + e is the one
# correctly rounded result.
sum_exact <- function(v) {
  s <- v[1L]
  e <- 0
  for (x in v[-1L]) {
    t <- s + x
    bp <- t - s
    e <- e + ((s - (t - bp)) + (x - bp))
    s <- t
  }
  s + e
}

parse_amounts <- function(a) as.numeric(a)

per_customer <- function(df, f) {
  ids <- unique(df$customer_id)
  g <- match(df$customer_id, ids)
  stats::setNames(vapply(split(parse_amounts(df$amount), g), f, numeric(1)), ids)
}

cat("writing fixtures to", OUT, "\n")

# ================================================================== basic ==
# ~1,000 customers, realistic: 1-12 orders, lognormal cents amounts, 3 years
# of history, rows shuffled; one customer ordered on the analysis date.
local({
  set.seed(20260101)
  n <- 1000L
  num <- sample(n)
  k <- pmin(1L + stats::rgeom(n, 0.4), 12L)
  custs <- vector("list", n)
  for (i in seq_len(n)) {
    start <- sample(30:1095, 1L)
    offs <- sort(sample(0:start, k[i], replace = TRUE))
    dates <- AD - start + offs
    cents <- pmax(1L, as.integer(round(exp(stats::rnorm(k[i], 3.6, 0.8)) * 100)))
    custs[[i]] <- list(id = paste0("cust_", num[i]), dates = dates, amounts = cents_str(cents))
  }
  # make sure recency 0 occurs
  j <- which(num == 1L)
  custs[[j]]$dates[length(custs[[j]]$dates)] <- AD
  df <- shuffle_keep_within(orders_df(custs))
  stopifnot(any(df$order_date == "2026-01-01"))
  write_fixture(df, "orders_basic.csv")
})

# =================================================================== ties ==
# 106 customers (so all four type-7 indices, 1 + 105*p, are exact integers:
# 22, 43, 64, 85).  Integer amounts and a few distinct values in every
# dimension, laid out so that quantile + 1 is itself a data value and some
# bins are empty.
#   frequency: 45x1 25x2 16x3 12x4 8x6   -> breaks 2,2,3,4 (bin 2 empty)
#   recency:   20x0 30x1 20x2 20x5 16x6  -> breaks 2,2,3,6 (score 4 empty)
#   monetary:  10x5 12x10 8x11 13x20 7x21 14x30 6x31 15x40 10x41 11x50
#              -> breaks 11,21,31,41, each one a customer total
ties_customers <- NULL
local({
  set.seed(4242)
  n <- 106L
  freq <- rep(c(1L, 2L, 3L, 4L, 6L), c(45L, 25L, 16L, 12L, 8L))
  rec <- rep(c(0L, 1L, 2L, 5L, 6L), c(20L, 30L, 20L, 20L, 16L))
  mon <- rep(c(5L, 10L, 11L, 20L, 21L, 30L, 31L, 40L, 41L, 50L), c(10L, 12L, 8L, 13L, 7L, 14L, 6L, 15L, 10L, 11L))
  stopifnot(length(freq) == n, length(rec) == n, length(mon) == n)
  freq <- sample(freq)
  rec <- sample(rec)
  mon <- sample(mon)
  # every total must be splittable into `freq` positive integer orders
  repeat {
    bad <- which(mon < freq)
    if (!length(bad)) break
    i <- bad[1L]
    cand <- which(mon >= freq[i] & freq <= mon[i])
    j <- cand[sample.int(length(cand), 1L)]
    tmp <- mon[i]
    mon[i] <- mon[j]
    mon[j] <- tmp
  }
  custs <- vector("list", n)
  for (i in seq_len(n)) {
    f <- freq[i]
    # split mon[i] into f positive integers
    cuts <- if (f > 1L) sort(sample(seq_len(mon[i] - 1L), f - 1L)) else integer(0)
    parts <- diff(c(0L, cuts, mon[i]))
    custs[[i]] <- list(
      id = sprintf("t%03d", i), dates = order_dates(f, rec[i], 120L),
      amounts = as.character(parts)
    )
  }
  df <- shuffle_keep_within(orders_df(custs))
  write_fixture(df, "orders_ties.csv")

  # self-checks on the aggregated values
  m <- per_customer(df, sum_ld)
  fr <- as.numeric(table(df$customer_id)[names(m)])
  b_m <- stats::quantile(m, PROBS_R, names = FALSE)[2:5] + 1
  b_f <- stats::quantile(fr, PROBS_R, names = FALSE)[2:5] + 1
  b_r <- stats::quantile(rec, PROBS_R, names = FALSE)[2:5] + 1
  stopifnot(
    identical(b_f, c(2, 2, 3, 4)), identical(b_r, c(2, 2, 3, 6)),
    identical(b_m, c(11, 21, 31, 41)), all(b_m %in% m), all(b_f[-1] %in% fr)
  )
  stopifnot(!any(bin_scores(fr) == 2L), !any(bin_scores(rec, reverse = TRUE) == 4L))
  ties_customers <<- list(
    id = sprintf("t%03d", seq_len(n)), rec = rec, freq = freq, mon = mon
  )
})

# ============================================================ customers ties ==
# The same 106 customers in the customers shape: must score exactly like
# orders_ties (checked by crosscheck.R).
local({
  tc <- ties_customers
  df <- data.frame(
    customer_id = tc$id,
    last_order_date = fmt_date(AD - tc$rec),
    order_count = as.character(tc$freq),
    total_revenue = as.character(tc$mon)
  )
  set.seed(77)
  write_fixture(df[sample(nrow(df)), ], "customers_ties.csv")
})

# ================================================================== cents ==
# Summation-order / precision traps.  106 customers (exact type-7 indices
# 22, 43, 64, 85 for the 20/40/60/80% quantiles).  Monetary ranks are built so
# that the customer at each quantile rank ("anchor_pXX") has a total whose
# value differs between R's long-double sum and other ways of summing, and the
# next customer ("edge_pXX", one order) has exactly anchor + 1, i.e. it sits
# exactly ON the break in R:
#   p20, p40, p60: R sum is the nice value, a double left fold is 1-2 ulp
#                  higher -> the break moves above edge_pXX, which then drops
#                  one monetary score under a plain fold.
#   p80:           R sum (= left fold) is 1 ulp above the correctly rounded
#                  exact sum; edge_p80 sits exactly on the *exact* break, so
#                  R's break is above it (score 4), while an exact / fsum /
#                  compensated sum puts it at score 5.
# The other customers ("ld_fold_*", "ld_exact_*", "ld_both_*", "classic_*")
# are totals whose long-double sum differs from a left fold, from the exact
# sum, or from both.
local({
  set.seed(3141)
  n <- 106L
  idx <- 1 + (n - 1) * PROBS_R[2:5]
  stopifnot(all(idx == c(22, 43, 64, 85)))

  anchors <- list(
    p20 = c("18.85", "3.17", "0.64"), # R 22.66, fold 22.660000000000004
    p40 = c("21.62", "7.46", "9.97", "3.95"), # R 43,   fold 43.000000000000007
    p60 = c("13.26", "71.79", "16.95"), # R 102,  fold 102.00000000000001
    p80 = c("22.97", "7.28", "82587.82", "47161.54") # R=fold 129779.61000000002, exact 129779.61
  )
  edges <- c(p20 = "23.66", p40 = "44.00", p60 = "103.00", p80 = "129780.61")

  classic <- list(
    classic_01_02 = c("0.1", "0.2"),
    classic_01_02_03 = c("0.1", "0.2", "0.3"),
    classic_ten_dimes = rep("0.1", 10),
    classic_07_01_02 = c("0.7", "0.1", "0.2"),
    classic_1999_x3 = c("19.99", "0.01", "2.2", "0.1"),
    classic_1999_07 = c("19.99", "0.7", "0.2")
  )

  classify <- function(v) {
    a <- sum_ld(v)
    c(ld = a, fold = sum_fold(v), exact = sum_exact(v))
  }

  # seeded random search for lists of a given class within (lo, hi)
  find_lists <- function(count, lo, hi, class, big = FALSE) {
    found <- list()
    tries <- 0L
    while (length(found) < count) {
      tries <- tries + 1L
      if (tries > 400000L) stop("search for ", class, " in (", lo, ",", hi, ") failed")
      m <- sample(2:5, 1L)
      cap <- as.integer(min(hi, 2e5) * 100 / if (big) 2 else m)
      cc <- if (big) {
        ifelse(stats::runif(m) < 0.5, sample.int(9999L, m, TRUE), sample.int(cap, m, TRUE))
      } else {
        sample.int(max(cap, 2L), m, TRUE)
      }
      s <- cents_str(cc)
      r <- classify(as.numeric(s))
      if (min(r) <= lo || max(r) >= hi) next
      ok <- switch(class,
        fold = r[["ld"]] != r[["fold"]] && r[["ld"]] == r[["exact"]],
        exact = r[["ld"]] == r[["fold"]] && r[["ld"]] != r[["exact"]],
        both = r[["ld"]] != r[["fold"]] && r[["ld"]] != r[["exact"]]
      )
      if (ok) found[[length(found) + 1L]] <- s
    }
    found
  }

  # rank layout: 1-21 | 22 anchor_p20 | 23 edge_p20 | 24-42 | 43 anchor_p40 |
  # 44 edge_p40 | 45-63 | 64 anchor_p60 | 65 edge_p60 | 66-84 | 85 anchor_p80 |
  # 86 edge_p80 | 87-106
  fill <- list(
    r1 = c(classic, stats::setNames(find_lists(15L, 0.5, 22.5, "fold"), sprintf("ld_fold_a%02d", 1:15))),
    r2 = stats::setNames(find_lists(19L, 23.8, 42.9, "fold"), sprintf("ld_fold_b%02d", 1:19)),
    r3 = stats::setNames(find_lists(19L, 44.1, 101.9, "fold"), sprintf("ld_fold_c%02d", 1:19)),
    r4 = c(
      stats::setNames(find_lists(10L, 103.1, 20000, "fold"), sprintf("ld_fold_d%02d", 1:10)),
      stats::setNames(find_lists(5L, 103.1, 129779, "exact", big = TRUE), sprintf("ld_exact_d%02d", 1:5)),
      stats::setNames(find_lists(4L, 103.1, 129779, "both", big = TRUE), sprintf("ld_both_d%02d", 1:4))
    ),
    r5 = c(
      stats::setNames(find_lists(8L, 129781, 4e5, "exact", big = TRUE), sprintf("ld_exact_e%02d", 1:8)),
      stats::setNames(find_lists(8L, 129781, 4e5, "both", big = TRUE), sprintf("ld_both_e%02d", 1:8)),
      stats::setNames(find_lists(4L, 129781, 4e5, "fold", big = TRUE), sprintf("ld_fold_e%02d", 1:4))
    )
  )
  lists <- c(
    fill$r1, list(anchor_p20 = anchors$p20, edge_p20 = edges[["p20"]]),
    fill$r2, list(anchor_p40 = anchors$p40, edge_p40 = edges[["p40"]]),
    fill$r3, list(anchor_p60 = anchors$p60, edge_p60 = edges[["p60"]]),
    fill$r4, list(anchor_p80 = anchors$p80, edge_p80 = edges[["p80"]]),
    fill$r5
  )
  stopifnot(length(lists) == n, !anyDuplicated(names(lists)))

  custs <- vector("list", n)
  for (i in seq_len(n)) {
    a <- lists[[i]]
    custs[[i]] <- list(
      id = names(lists)[i], dates = order_dates(length(a), sample(0:400, 1L)),
      amounts = a
    )
  }
  df <- shuffle_keep_within(orders_df(custs))
  write_fixture(df, "orders_cents.csv")

  # ---- self-checks ----
  ld <- per_customer(df, sum_ld)
  fold <- per_customer(df, sum_fold)
  ex <- per_customer(df, sum_exact)
  rk <- rank(ld, ties.method = "first")
  for (p in names(anchors)) {
    a <- paste0("anchor_", p)
    e <- paste0("edge_", p)
    stopifnot(rk[[a]] == idx[match(p, names(anchors))], rk[[e]] == rk[[a]] + 1)
    if (p == "p80") {
      # on the exact-sum break, one ulp below R's
      stopifnot(ex[[a]] + 1 == ld[[e]], ld[[a]] + 1 > ld[[e]])
    } else {
      # exactly on R's break, one ulp or two below a left fold's
      stopifnot(ld[[a]] + 1 == ld[[e]], fold[[a]] + 1 > ld[[e]])
    }
  }
  s_ld <- bin_scores(ld)
  s_fold <- bin_scores(fold)
  s_ex <- bin_scores(ex)
  nm <- names(ld)
  moved_fold <- sort(nm[s_ld != s_fold])
  moved_exact <- sort(nm[s_ld != s_ex])
  stopifnot(
    identical(moved_fold, c("edge_p20", "edge_p40", "edge_p60")),
    identical(moved_exact, "edge_p80"),
    sum(ld != fold) >= 60L, sum(ld != ex) >= 20L, sum(ld != fold & ld != ex) >= 12L
  )
  cat(sprintf(
    "    cents: %d totals differ ld/fold, %d ld/exact, %d both; score moves: fold %s, exact %s\n",
    sum(ld != fold), sum(ld != ex), sum(ld != fold & ld != ex),
    paste(moved_fold, collapse = " "), paste(moved_exact, collapse = " ")
  ))
})

# =================================================================== same ==
# Every customer identical: all breaks equal (value + 1), everybody in bin 1
# of every dimension -> code 511.
local({
  custs <- lapply(sprintf("same_%02d", 1:12), function(id) {
    list(
      id = id, dates = as.Date(c("2025-06-01", "2025-07-01", "2025-08-15")),
      amounts = c("19.99", "5.00", "0.01")
    )
  })
  write_fixture(orders_df(custs), "orders_same.csv")
})

# =================================================================== tiny ==
# n < 5 customers.
local({
  write_fixture(orders_df(list(
    list(id = "solo", dates = as.Date(c("2025-10-01", "2025-12-01")), amounts = c("10.00", "15.50"))
  )), "orders_tiny_1.csv")

  write_fixture(orders_df(list(
    list(id = "t2_b", dates = as.Date(c("2025-03-01", "2025-04-01", "2025-05-01")), amounts = c("5.00", "5.00", "5.00")),
    list(id = "t2_a", dates = as.Date("2025-12-31"), amounts = "100.00")
  )), "orders_tiny_2.csv")

  write_fixture(orders_df(list(
    list(id = "t3_a", dates = as.Date(c("2025-11-01", "2025-12-22")), amounts = c("20.00", "30.00")),
    list(id = "t3_b", dates = as.Date("2025-12-22"), amounts = "20.00"),
    list(id = "t3_c", dates = as.Date(c("2025-01-01", "2025-06-01", "2025-08-01", "2025-09-23")), amounts = c("10.00", "10.00", "10.00", "20.00"))
  )), "orders_tiny_3.csv")

  # n = 4: type-7 index for p = 0.6 is 1 + 3*0.6000000000000001 =
  # 2.8000000000000003 (with a literal 0.6 it would be 2.7999999999999998).
  # Sorted values in every dimension have x2 = 2 and x3 = 7, so the 60%
  # quantile is 2 + 0.8*5 = 6 "in exact arithmetic", but R computes
  # 6.0000000000000009 (a literal 0.6 gives 5.9999999999999991): the break is
  # just above 7 and the x3 customer scores 3 (R) instead of 4.
  #   recency 1 2 7 40 | frequency 1 2 7 9 | monetary 1.50 2.00 7.00 40.50
  spec <- list(
    t4_a = list(r = 7L, f = 2L, m = 150L), t4_b = list(r = 1L, f = 7L, m = 700L),
    t4_c = list(r = 40L, f = 9L, m = 4050L), t4_d = list(r = 2L, f = 1L, m = 200L)
  )
  set.seed(44)
  custs <- lapply(names(spec), function(id) {
    s <- spec[[id]]
    # f orders: (f-1) x 0.25 and the rest; quarters add up exactly
    parts <- c(rep(25L, s$f - 1L), s$m - 25L * (s$f - 1L))
    stopifnot(all(parts > 0L))
    list(id = id, dates = order_dates(s$f, s$r, 200L), amounts = cents_str(parts))
  })
  df <- orders_df(custs)
  write_fixture(df, "orders_tiny_4.csv")
  r <- vapply(spec, `[[`, 0L, "r")
  f <- vapply(spec, `[[`, 0L, "f")
  m <- per_customer(df, sum_ld)[names(spec)]
  stopifnot(
    any(bin_scores(r, reverse = TRUE) != bin_scores(r, PROBS_LITERAL, reverse = TRUE)),
    any(bin_scores(f) != bin_scores(f, PROBS_LITERAL)),
    any(bin_scores(m) != bin_scores(m, PROBS_LITERAL))
  )
})

# ================================================================ refunds ==
# Negative order amounts (refunds count as transactions, n() counts rows),
# totals of exactly zero, negative totals, a float "zero" that is not zero,
# and a "-0.00" order.
local({
  set.seed(555)
  special <- list(
    list(id = "r_zero_exact", amounts = c("10.00", "-10.00")),
    list(id = "r_zero_float", amounts = c("0.1", "0.2", "-0.3")), # R 2.7755575615628914e-17, fold 5.5511151231257827e-17
    list(id = "r_zero_single", amounts = "0.00"),
    list(id = "r_negzero", amounts = "-0.00"), # sum() starts at +0: total prints as 0
    list(id = "r_negative", amounts = "-5.50"),
    list(id = "r_neg_multi", amounts = c("-20.00", "5.00", "-1.25")),
    list(id = "r_full_refund_plus_cent", amounts = c("100.00", "-30.00", "-70.00", "0.01")),
    list(id = "r_big_refund", amounts = c("19.99", "-250.00"))
  )
  custs <- lapply(special, function(s) {
    list(id = s$id, dates = order_dates(length(s$amounts), sample(0:300, 1L), 60L), amounts = s$amounts)
  })
  for (i in 1:32) {
    k <- sample(1:5, 1L)
    cents <- sample(100:20000, k, replace = TRUE)
    if (k > 1L && stats::runif(1) < 0.4) cents[k] <- -sample(cents[seq_len(k - 1L)], 1L) # refund a previous order
    custs[[length(custs) + 1L]] <- list(
      id = sprintf("r_%02d", i), dates = order_dates(k, sample(0:500, 1L), 120L), amounts = cents_str(cents)
    )
  }
  df <- shuffle_keep_within(orders_df(custs))
  write_fixture(df, "orders_refunds.csv")
  ld <- per_customer(df, sum_ld)
  stopifnot(
    ld[["r_zero_exact"]] == 0, ld[["r_zero_float"]] != 0,
    ld[["r_zero_float"]] != per_customer(df, sum_fold)[["r_zero_float"]],
    identical(sprintf("%.17g", ld[["r_negzero"]]), "0"), min(ld) < 0
  )
})

# ========================================================== unsorted ids ==
# Ids that sort differently as numbers, case-folded, locale-collated, or
# UTF-16 code units (JS default sort) than as UTF-8 bytes.  Includes NFC
# "\u00e41" and NFD "a\u03081" (two different ids), "NA", "007" vs "7".
local({
  set.seed(909)
  ids <- c(
    "9", "10", "C-2", "c-2", "\u00e41", "a\u03081", "a1", "A1", "007", "7",
    "NA", "-1", "1e3", "Z", "_x", "\u00e9", "\u65e5\u672c", "\U0001F600",
    "\uFF5A", "b", "B", "10.0"
  )
  custs <- lapply(ids, function(id) {
    k <- sample(1:3, 1L)
    list(id = id, dates = order_dates(k, sample(0:200, 1L), 90L), amounts = cents_str(sample(500:9000, k, TRUE)))
  })
  df <- orders_df(custs)
  set.seed(910)
  df <- df[sample(nrow(df)), ]
  write_fixture(df, "orders_unsorted_ids.csv")
})

# =========================================================== quoted ids ==
# Ids needing CSV quoting (comma, double quote), plus look-alikes that don't.
local({
  set.seed(1234)
  ids <- c("acme, inc.", "say \"hi\"", "\"quoted\"", "o'brien", "plain", "semi;colon", "a,b,\"c\"")
  custs <- lapply(ids, function(id) {
    k <- sample(1:4, 1L)
    list(id = id, dates = order_dates(k, sample(0:300, 1L), 90L), amounts = cents_str(sample(100:50000, k, TRUE)))
  })
  write_fixture(orders_df(custs), "orders_quoted_ids.csv")
})

# ============================================================== probs fp ==
# 21 customers: the type-7 index for the 60% quantile is
# 1 + 20*0.6000000000000001 = 13.000000000000002, not 13.  Each dimension has
# x13 = a and x14 = a + 1 (a = 10 days / 3 orders / 12.00), so R interpolates
# q60 = a + 2^-49 and the break is a + 1 + 2^-49: the customer with exactly
# a + 1 lands one bin lower than with an exact 0.6.
local({
  set.seed(2121)
  n <- 21L
  rec <- c(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 10, 10, 11, 12, 20, 30, 45, 60, 90, 120)
  freq <- c(1, 1, 1, 1, 1, 2, 2, 2, 2, 2, 3, 3, 3, 4, 4, 5, 5, 6, 7, 8, 9)
  mon <- c(5, 6, 7, 7, 8, 9, 9, 10, 10, 11, 11, 11, 12, 13, 14, 15, 18, 20, 25, 30, 40)
  stopifnot(length(rec) == n, length(freq) == n, length(mon) == n)
  rec <- as.integer(sample(rec))
  freq <- as.integer(sample(freq))
  mon <- sample(mon)
  custs <- vector("list", n)
  for (i in seq_len(n)) {
    f <- freq[i]
    # (f-1) orders of 0.50 plus the rest: halves are exact in any order
    parts <- c(rep(50L, f - 1L), as.integer(mon[i] * 100) - 50L * (f - 1L))
    stopifnot(all(parts > 0L))
    custs[[i]] <- list(id = sprintf("p%02d", i), dates = order_dates(f, rec[i], 100L), amounts = cents_str(parts))
  }
  df <- shuffle_keep_within(orders_df(custs))
  write_fixture(df, "orders_probs_fp.csv")
  m <- per_customer(df, sum_ld)[sprintf("p%02d", seq_len(n))]
  stopifnot(
    1 + (n - 1) * PROBS_R[4] == 13.000000000000002,
    any(bin_scores(rec, reverse = TRUE) != bin_scores(rec, PROBS_LITERAL, reverse = TRUE)),
    any(bin_scores(freq) != bin_scores(freq, PROBS_LITERAL)),
    any(bin_scores(m) != bin_scores(m, PROBS_LITERAL))
  )
})

# ======================================================= customers basic ==
# 500 customers in the customers shape (customer_id, last_order_date,
# order_count, total_revenue); one last order on the analysis date.
local({
  set.seed(8080)
  n <- 500L
  cnt <- pmin(1L + stats::rgeom(n, 0.3), 40L)
  rec <- sample(0:900, n, replace = TRUE)
  rec[17] <- 0L
  rev <- vapply(cnt, function(k) {
    sum(pmax(1L, as.integer(round(exp(stats::rnorm(k, 3.8, 0.9)) * 100))))
  }, 0)
  df <- data.frame(
    customer_id = sprintf("CU%04d", sample(1:9999, n)),
    last_order_date = fmt_date(AD - rec),
    order_count = as.character(cnt),
    total_revenue = cents_str(rev)
  )
  stopifnot(!anyDuplicated(df$customer_id))
  write_fixture(df, "customers_basic.csv")
})

cat("done\n")
