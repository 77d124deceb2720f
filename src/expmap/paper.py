"""The paper's accuracy table (SPEC §5): its four benchmarks and, for each, the methods it
compares with and its own result, in percent as it prints them."""

# SPEC §5 (the report's figure 10): accuracy in percent, written as the paper prints it.
BENCHMARKS = {
    "ckplus": "CK+",
    "oulu_casia": "Oulu-CASIA",
    "rafdb": "RAF-DB",
    "affectnet": "AffectNet",
}
OURS_PAPER = "Ours (paper)"
PAPER = {
    "ckplus": [("DCMA-CNNs", "93.46"), ("DAM", "95.88"), ("GA-CNN", "96.4"), ("DeRL", "97.3"),
               ("LBVCNN", "97.38"), ("G2-VER", "97.40"), (OURS_PAPER, "98.06")],
    "oulu_casia": [("DCD", "84.80"), ("DCPN", "86.23"), ("SNA", "87.60"), ("DeRL", "88.00"),
                   ("IDFERM", "88.25"), ("DDL", "88.26"), (OURS_PAPER, "89.05")],
    "rafdb": [("PG-CNN", "83.27"), ("ALT", "84.50"), ("GA-CNN", "85.07"), ("SEP-Loss", "86.38"),
              ("IPA2LT", "86.77"), ("DDA-Loss", "86.90"), (OURS_PAPER, "87.10")],
    "affectnet": [("PG-CNN", "55.33"), ("IPA2LT", "57.31"), ("GA-CNN", "58.78"),
                  ("SEP-Loss", "58.89"), ("ESR-9", "59.30"), ("LDER", "60.53"),
                  (OURS_PAPER, "62.10")],
}


def own_result(dataset: str) -> float | None:
    """The paper's own accuracy on `dataset` (None: not one of its benchmarks)."""
    found = dict(PAPER.get(dataset, []))
    return float(found[OURS_PAPER]) if OURS_PAPER in found else None


def best_comparator(dataset: str) -> tuple[str, float] | None:
    """The most accurate method the paper compares with on `dataset`, and its accuracy."""
    others = [(method, float(value)) for method, value in PAPER.get(dataset, [])
              if method != OURS_PAPER]
    return max(others, key=lambda pair: pair[1]) if others else None
