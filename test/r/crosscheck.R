#!/usr/bin/env Rscript
# crosscheck.R -- sanity checks on the golden outputs.
#
#   Rscript test/r/crosscheck.R [FIXTURE_DIR]   (default: test/fixtures/rfm)
#
# 1. Always: structural invariants of every expected/<fixture>.<map>.csv
#    (header, one row per customer, byte-order sort, code = 100r+10f+m,
#    both segment maps re-derived, default/rules files agree, breaks files
#    agree) plus fixture-specific facts (customers_ties == orders_ties, ...).
# 2. If dplyr is installed (Debian: r-cran-dplyr): a second, independent
#    implementation written the way the package pipes it
#    (group_by -> summarise(max, sum, n()) -> mutate(recency) -> bins loop)
#    must reproduce every number bit for bit.
# Exits non-zero on the first failure.

options(warn = 2, stringsAsFactors = FALSE)
args <- commandArgs(trailingOnly = TRUE)
DIR <- if (length(args) >= 1L) args[[1L]] else file.path("test", "fixtures", "rfm")
AD <- as.Date("2026-01-01")
HEADER <- "customer_id,recency_days,frequency,monetary,r,f,m,rfm_code,segment"

failures <- 0L
check <- function(ok, ...) {
  if (!isTRUE(ok)) {
    failures <<- failures + 1L
    cat("FAIL: ", ..., "\n", sep = "")
  }
  invisible(ok)
}

read_chr <- function(path) {
  utils::read.csv(path,
    colClasses = "character", na.strings = character(0), check.names = FALSE,
    encoding = "UTF-8", comment.char = ""
  )
}

read_breaks <- function(path) {
  txt <- paste(readLines(path, warn = FALSE, encoding = "UTF-8"), collapse = "")
  get <- function(key) {
    m <- regmatches(txt, regexpr(paste0("\"", key, "\":\\[[^]]*\\]"), txt))
    as.numeric(strsplit(sub(".*\\[(.*)\\]", "\\1", m), ",", fixed = TRUE)[[1L]])
  }
  list(recency = get("recency"), frequency = get("frequency"), monetary = get("monetary"))
}

byte_sorted <- function(x) {
  if (length(x) < 2L) {
    return(TRUE)
  }
  all(vapply(seq_len(length(x) - 1L), function(k) {
    a <- as.integer(charToRaw(x[k]))
    b <- as.integer(charToRaw(x[k + 1L]))
    n <- min(length(a), length(b))
    d <- which(a[seq_len(n)] != b[seq_len(n)])
    if (length(d)) a[d[1L]] < b[d[1L]] else length(a) < length(b)
  }, logical(1)))
}

# segment maps, written independently of rfm_reference.R
rules_segment <- function(r, f, m) {
  rules <- list(
    list("Champions", 5, 5, 5, 5, 5, 5), list("Potential Loyalist", 3, 5, 3, 5, 2, 5),
    list("Loyal Customers", 2, 4, 2, 4, 2, 4), list("Promising", 3, 4, 1, 3, 3, 5),
    list("New Customers", 4, 5, 1, 3, 1, 5), list("Can't Lose Them", 1, 2, 3, 4, 4, 5),
    list("At Risk", 1, 2, 2, 5, 4, 5), list("Need Attention", 1, 3, 3, 5, 3, 5),
    list("About To Sleep", 2, 3, 1, 3, 1, 4), list("Lost", 1, 1, 1, 5, 1, 5)
  )
  vapply(seq_along(r), function(i) {
    for (ru in rules) {
      if (r[i] >= ru[[2]] && r[i] <= ru[[3]] && f[i] >= ru[[4]] && f[i] <= ru[[5]] &&
        m[i] >= ru[[6]] && m[i] <= ru[[7]]) {
        return(ru[[1]])
      }
    }
    "Others"
  }, "")
}

default_segment <- function(code) {
  tab <- c(
    "555 554 544 545 454 455 445" = "Champions",
    "543 444 435 355 354 345 344 335" = "Loyal Customers",
    "553 551 552 541 542 533 532 531 452 451 442 441 431 453 433 432 423 353 352 351 342 341 333 323" = "Potential Loyalist",
    "512 511 422 421 412 411 311" = "New Customers",
    "525 524 523 522 521 515 514 513 425 424 413 414 415 315 314 313" = "Promising",
    "535 534 443 434 343 334 325 324" = "Need Attention",
    "331 321 312 221 213" = "About To Sleep",
    "255 254 245 244 253 252 243 242 235 234 225 224 153 152 145 143 142 135 134 133 125 124" = "At Risk",
    "155 154 144 214 215 115 114 113" = "Can't Lose Them",
    "332 322 231 241 251 233 232 223 222 132 123 122 212 211" = "Hibernating",
    "111 112 121 131 141 151" = "Lost"
  )
  vapply(as.character(code), function(cd) {
    hit <- names(tab)[vapply(strsplit(names(tab), " "), function(v) cd %in% v, NA)]
    if (length(hit) != 1L) "Others" else tab[[hit]]
  }, "", USE.NAMES = FALSE)
}

fixtures <- sort(list.files(DIR, pattern = "\\.csv$"))
if (!length(fixtures)) stop("no fixtures in ", DIR)
golden <- list()

for (fx in fixtures) {
  name <- sub("\\.csv$", "", fx)
  shape <- if (startsWith(name, "customers_")) "customers" else "orders"
  input <- read_chr(file.path(DIR, fx))
  n_cust <- length(unique(input$customer_id))
  per_map <- list()
  for (map in c("default", "rules")) {
    out <- file.path(DIR, "expected", paste0(name, ".", map, ".csv"))
    if (!check(file.exists(out), "missing ", out)) next
    first <- readLines(out, n = 1L, warn = FALSE)
    check(identical(first, HEADER), out, ": header is '", first, "'")
    g <- read_chr(out)
    num <- function(col) as.numeric(g[[col]])
    check(nrow(g) == n_cust, out, ": ", nrow(g), " rows for ", n_cust, " customers")
    check(!anyDuplicated(g$customer_id), out, ": duplicate ids")
    check(setequal(g$customer_id, input$customer_id), out, ": id set differs from input")
    check(byte_sorted(g$customer_id), out, ": ids not in byte order")
    for (s in c("r", "f", "m")) check(all(num(s) %in% 1:5), out, ": bad ", s)
    check(all(num("rfm_code") == 100 * num("r") + 10 * num("f") + num("m")), out, ": code != 100r+10f+m")
    want <- if (map == "rules") rules_segment(num("r"), num("f"), num("m")) else default_segment(num("rfm_code"))
    check(identical(g$segment, want), out, ": segment column does not follow the ", map, " map")
    b <- read_breaks(paste0(out, ".breaks.json"))
    check(all(lengths(b) == 4L), out, ".breaks.json: want 4 breaks per dimension")
    check(all(vapply(b, function(v) all(diff(v) >= 0), NA)), out, ".breaks.json: breaks decrease")
    per_map[[map]] <- list(g = g, b = b)
  }
  if (length(per_map) == 2L) {
    a <- per_map$default
    z <- per_map$rules
    check(identical(a$g[names(a$g) != "segment"], z$g[names(z$g) != "segment"]), name, ": default and rules outputs differ outside 'segment'")
    check(identical(a$b, z$b), name, ": default and rules breaks differ")
    golden[[name]] <- a
  }
}

# ---- fixture-specific facts -------------------------------------------------
if (!is.null(golden$orders_ties) && !is.null(golden$customers_ties)) {
  o <- golden$orders_ties
  cu <- golden$customers_ties
  check(identical(o$g, cu$g), "customers_ties must score exactly like orders_ties")
  check(identical(o$b, cu$b), "customers_ties breaks must equal orders_ties breaks")
  check(identical(o$b$frequency, c(2, 2, 3, 4)), "orders_ties frequency breaks")
  check(identical(o$b$monetary, c(11, 21, 31, 41)), "orders_ties monetary breaks")
}
if (!is.null(golden$orders_same)) {
  check(all(golden$orders_same$g$rfm_code == "511"), "orders_same: everybody must be 511")
}
if (!is.null(golden$orders_tiny_1)) {
  g <- golden$orders_tiny_1$g
  check(identical(golden$orders_tiny_1$b$monetary, rep(as.numeric(g$monetary) + 1, 4)), "tiny_1 breaks = value + 1")
}
if (!is.null(golden$orders_probs_fp)) {
  b <- golden$orders_probs_fp$b
  check(b$frequency[3] == 4 + 2^-49 && b$recency[3] == 11 + 2^-49 && b$monetary[3] == 13 + 2^-49, "orders_probs_fp: 60% breaks must be a + 1 + 2^-49")
}

# ---- independent dplyr implementation -----------------------------------
if (requireNamespace("dplyr", quietly = TRUE)) {
  suppressPackageStartupMessages(library(dplyr))
  pkg_bins <- function(x) {
    q <- unname(stats::quantile(x, probs = seq(0, 1, length.out = 6)))
    q[c(-1, -6)] + 1
  }
  pkg_scores <- function(x, b, labels) {
    lower <- append(min(x), b)
    upper <- c(b, max(x) + 1)
    out <- rep(NA, length(x))
    for (i in seq_along(labels)) out[x >= lower[i] & x < upper[i]] <- labels[i]
    out
  }
  for (name in names(golden)) {
    input <- read_chr(file.path(DIR, paste0(name, ".csv")))
    if (startsWith(name, "customers_")) {
      res <- input %>%
        mutate(recency_days = as.numeric(AD - as.Date(last_order_date), units = "days")) %>%
        transmute(customer_id,
          recency_days,
          transaction_count = as.numeric(order_count), amount = as.numeric(total_revenue)
        )
    } else {
      res <- input %>%
        mutate(order_date = as.Date(order_date), amount = as.numeric(amount)) %>%
        group_by(customer_id) %>%
        summarise(date_most_recent = max(order_date), amount = sum(amount), transaction_count = n(), .groups = "drop") %>%
        mutate(recency_days = as.numeric(AD - date_most_recent, units = "days"))
    }
    b <- list(
      recency = pkg_bins(res$recency_days), frequency = pkg_bins(res$transaction_count),
      monetary = pkg_bins(res$amount)
    )
    res$r <- pkg_scores(res$recency_days, b$recency, 5:1)
    res$f <- pkg_scores(res$transaction_count, b$frequency, 1:5)
    res$m <- pkg_scores(res$amount, b$monetary, 1:5)
    g <- golden[[name]]$g
    k <- match(g$customer_id, res$customer_id)
    check(!anyNA(k), name, ": dplyr ids differ")
    res <- res[k, ]
    same <- function(a, b) isTRUE(all(a == b)) && length(a) == length(b)
    check(same(as.numeric(g$recency_days), res$recency_days), name, ": dplyr recency differs")
    check(same(as.numeric(g$frequency), as.numeric(res$transaction_count)), name, ": dplyr frequency differs")
    check(same(as.numeric(g$monetary), res$amount), name, ": dplyr monetary differs")
    check(same(as.integer(g$r), res$r) && same(as.integer(g$f), res$f) && same(as.integer(g$m), res$m), name, ": dplyr scores differ")
    for (d in names(b)) check(identical(golden[[name]]$b[[d]], b[[d]]), name, ": dplyr ", d, " breaks differ")
  }
  cat(sprintf("crosscheck: dplyr %s re-implementation compared on %d fixtures\n", utils::packageVersion("dplyr"), length(golden)))
} else {
  cat("crosscheck: dplyr not installed, skipped the independent re-implementation\n")
}

if (failures > 0L) {
  cat(sprintf("crosscheck: %d failure(s)\n", failures))
  quit(status = 1, save = "no")
}
cat(sprintf("crosscheck: %d fixtures OK\n", length(golden)))
