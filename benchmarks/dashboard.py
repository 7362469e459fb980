"""How long `aicost dashboard` takes to build on a month of synthetic ledger (target: at most 5 s).

    python benchmarks/dashboard.py [--ledger sqlite:///month.db] [--screenshot docs/img/dashboard.png]

Fills a SQLite ledger with the ledger's synthetic generator (30 days, 50 teams, 500 customers, 100,000 calls,
one team's traffic 6x on one day; kept and reused if --ledger points at an existing file), then builds the page in this process, three times,
with a company budget and a per-team budget forecast as of the 18th, and prints the import time of the
libraries the page needs (paid once per process), each build's wall and CPU time, and the page size. With --screenshot, headless Chromium renders the page to a PNG (docs/img/dashboard.png
is made this way).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")  # as the CLI does: small fits are slower with a thread pool

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--ledger", help="sqlite:///path.db; filled with a synthetic month if it does not exist")
    parser.add_argument("--screenshot", help="write a PNG of the page rendered by headless Chromium")
    parser.add_argument("--out", help="keep the page here")
    args = parser.parse_args()

    from aicost.ledger import open_store
    from aicost.ledger.report import Period
    from aicost.ledger.synthetic import Profile, fill

    workdir = tempfile.mkdtemp(prefix="aicost-bench-")
    url = args.ledger or f"sqlite:///{workdir}/month.db"
    path = url.removeprefix("sqlite:///")
    profile = Profile(spikes=((2, 20, 6.0),))  # the default month, and team-02 at 6x its traffic on Nov 21
    if not os.path.exists(path):
        t0 = time.perf_counter()
        with open_store(url) as store:
            rows = fill(store, profile)
        print(f"synthetic ledger: {rows:,} rows in {time.perf_counter() - t0:.1f} s -> {url}")

    t0 = time.perf_counter()
    import plotly.graph_objects  # noqa: F401
    import statsmodels.tsa.forecasting.stl  # noqa: F401
    import statsmodels.tsa.seasonal  # noqa: F401

    from aicost.reports.dashboard import build_dashboard

    print(f"import plotly + statsmodels: {time.perf_counter() - t0:.2f} s (once per process)")
    from datetime import date

    from aicost.budget import Budget

    period = Period(profile.start, profile.start.replace(month=profile.start.month + 1), "month")
    # A company budget and a per-team one (each of 50 teams gets $60 a month); forecasts as of the 18th.
    budgets = [Budget(limit_usd="400", window="month", name="company"),
               Budget(limit_usd="60", window="month", scope="team", name="team-monthly")]
    page = ""
    with open_store(url, create=False) as store:
        for i in range(3):
            w0, c0 = time.perf_counter(), time.process_time()
            page, summary = build_dashboard(store, period, budgets=budgets, as_of=date(2026, 11, 18))
            print(f"build {i + 1}: {time.perf_counter() - w0:.2f} s wall, {time.process_time() - c0:.2f} s CPU "
                  f"({summary})")
    out = args.out or os.path.join(workdir, "spend.html")
    with open(out, "w", encoding="utf-8") as f:
        f.write(page)
    print(f"page: {len(page) / 1e6:.2f} MB ({out})")
    if args.screenshot:
        with tempfile.TemporaryDirectory(prefix="aicost-chromium-") as profile_dir:
            subprocess.run(
                ["chromium", "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 f"--user-data-dir={profile_dir}", "--hide-scrollbars", "--window-size=1400,2750",
                 "--virtual-time-budget=20000", f"--screenshot={os.path.abspath(args.screenshot)}",
                 f"file://{os.path.abspath(out)}"],
                check=True, capture_output=True, timeout=300)
        print(f"screenshot: {args.screenshot}")


if __name__ == "__main__":
    main()
