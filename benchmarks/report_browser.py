"""report.html in a real browser: headless Chromium loads it, its self-check counts the
figures the browser decoded, and a screenshot shows what a person sees.

    python benchmarks/report_browser.py WORK/report/report.html [--screenshot docs/report.png]

Needs Chromium from the system packages (Debian: apt-get install chromium). Prints
"N/M figures rendered" and exits 1 unless every figure (M > 0) rendered.
"""

import argparse
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

BROWSERS = ("chromium", "chromium-browser", "google-chrome", "chrome")


def browser():
    found = next((shutil.which(name) for name in BROWSERS if shutil.which(name)), None)
    if found is None:
        sys.exit("no Chromium here: apt-get install chromium (or name it in $PATH)")
    return found


def run_headless(page, *flags, timeout=120):
    with tempfile.TemporaryDirectory() as profile:  # no state kept between runs
        command = [browser(), "--headless", "--no-sandbox", "--disable-gpu",
                   f"--user-data-dir={profile}", "--virtual-time-budget=10000", *flags,
                   page.resolve().as_uri()]  # fmt: skip
        return subprocess.run(command, capture_output=True, text=True, timeout=timeout)


def figures_rendered(page):
    """(rendered, total) as the page's own check wrote them into the DOM after load."""
    dom = run_headless(page, "--dump-dom").stdout
    found = re.search(r'data-figures="(\d+)/(\d+)"', dom)
    if not found:
        sys.exit(f"{page}: the page's self-check did not run (no data-figures in the DOM)")
    return int(found[1]), int(found[2])


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("page", type=Path, help="a report.html")
    parser.add_argument("--screenshot", type=Path, metavar="PNG")
    parser.add_argument("--size", default="1200,3200", metavar="W,H", help="window size")
    args = parser.parse_args()
    if not args.page.is_file():
        sys.exit(f"no file {args.page}")
    rendered, total = figures_rendered(args.page)
    print(f"{rendered}/{total} figures rendered by {Path(browser()).name} ({args.page})")
    if args.screenshot:
        args.screenshot.parent.mkdir(parents=True, exist_ok=True)
        shot = args.screenshot.resolve()
        run_headless(args.page, f"--screenshot={shot}", f"--window-size={args.size}",
                     "--hide-scrollbars")  # fmt: skip
        if not shot.is_file():
            sys.exit(f"no screenshot written to {shot}")
        print(f"screenshot: {args.screenshot}")
    sys.exit(0 if total and rendered == total else 1)


if __name__ == "__main__":
    main()
