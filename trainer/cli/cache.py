"""``mstrain cache``: what the tool keeps in its cache folder, and clearing it.

    mstrain cache list [--json]
    mstrain cache clear [--older-than DAYS] [--max-size SIZE] [--dry-run]

Nothing here imports MindSpore, so both answer at once.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import time
from collections.abc import Sequence

from trainer.cli.parser import UserParser, run_reporting_errors
from trainer.errors import ConfigError

# Bounds on the options: a century of days, and a size cap up to an exabyte.
_MAX_DAYS = 36_500
_UNITS = {"": 1, "B": 1, "K": 1 << 10, "KB": 1 << 10, "KIB": 1 << 10, "M": 1 << 20, "MB": 1 << 20,
          "MIB": 1 << 20, "G": 1 << 30, "GB": 1 << 30, "GIB": 1 << 30, "T": 1 << 40,
          "TB": 1 << 40, "TIB": 1 << 40}
_SIZE = re.compile(r"^\s*(\d{1,15}(?:\.\d{1,6})?)\s*([A-Za-z]{0,3})\s*$")

EPILOG = """examples:
  mstrain cache list                       every entry, its size and last use, and the total
  mstrain cache clear                      remove everything no run is using
  mstrain cache clear --older-than 30      entries not used for 30 days
  mstrain cache clear --max-size 2G        the least recently used, until 2 GiB remain
  mstrain cache clear --older-than 7 --dry-run
"""


def build_parser(prog: str = "mstrain cache") -> UserParser:
    parser = UserParser(prog=prog, usage="%(prog)s {list,clear} [options]",
                        description="List or clear what the tool keeps in its cache folder\n"
                        "($MSTRAIN_CACHE/mstrain, else $XDG_CACHE_HOME/mstrain, else\n"
                        "~/.cache/mstrain): decoded digits, held-out validation splits and raw\n"
                        "copies of gzipped IDX files. All of it is rebuilt when needed; entries\n"
                        "a run is using or building are never removed.",
                        epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    actions = parser.add_subparsers(dest="action", metavar="{list,clear}",
                                    parser_class=UserParser)
    listing = actions.add_parser("list", help="show every entry, its size and last use, and "
                                 "the total", prog=f"{prog} list")
    listing.add_argument("--json", action="store_true", help="print one JSON document instead "
                         "of a table")
    clearing = actions.add_parser("clear", help="remove entries (all by default) that no run is "
                                  "using", prog=f"{prog} clear")
    clearing.add_argument("--older-than", type=_days, metavar="DAYS", help="only entries not "
                          "used for DAYS days (a number, 0 for all)")
    clearing.add_argument("--max-size", type=_size, metavar="SIZE", help="remove the least "
                          "recently used entries until the cache holds at most SIZE (bytes, or "
                          "with K, M, G, T: 500M, 2G)")
    clearing.add_argument("--dry-run", action="store_true", help="say what would be removed, "
                          "remove nothing")
    return parser


def _days(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number of days, got {text!r}") from None
    if not 0 <= value <= _MAX_DAYS:  # also refuses nan and inf
        raise argparse.ArgumentTypeError(f"must be from 0 to {_MAX_DAYS:,} days, got {text!r}")
    return value


def _size(text: str) -> int:
    match = _SIZE.match(text)
    unit = match.group(2).upper() if match else None
    if match is None or unit not in _UNITS:
        raise argparse.ArgumentTypeError(f"expected a size such as 500M or 2G, got {text!r}")
    return int(float(match.group(1)) * _UNITS[unit])


def size_text(count: int) -> str:
    """``15_360_000`` as ``14.6 MiB``."""
    for unit, size in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if count >= size:
            return f"{count / size:.1f} {unit}"
    return f"{count} B"


def _age(seconds: float) -> str:
    days = int(max(0.0, seconds) // 86400)
    return "today" if days == 0 else "1 day ago" if days == 1 else f"{days} days ago"


def _list(as_json: bool) -> None:
    from trainer.data.entries import list_entries
    from trainer.fileio import cache_root

    rows, now = list_entries(), time.time()
    total = sum(r.size for r in rows)
    if as_json:
        print(json.dumps({"folder": str(cache_root()), "total_bytes": total, "entries": [
            {"entry": r.label, "path": str(r.path), "bytes": r.size, "last_used":
             time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime(r.last_used)),
             "state": r.state or "ok", "about": r.about} for r in rows]}, indent=2))
        return
    print(f"Cache folder: {cache_root()}")
    if not rows:
        print("It is empty.")
        return
    width = max(len(r.label) for r in rows)
    for r in rows:
        used = time.strftime("%Y-%m-%d %H:%M", time.localtime(r.last_used))
        state = f"  [{r.state}]" if r.state else ""
        about = f"  {r.about}" if r.about else ""
        print(f"  {r.label:<{width}}  {size_text(r.size):>10}  {used} ({_age(now - r.last_used)})"
              f"{state}{about}")
    print(f"{len(rows)} entr{'y' if len(rows) == 1 else 'ies'}, {size_text(total)} in all. "
          "'mstrain cache clear' removes what no run is using.")


def _clear(older_than: float | None, max_size: int | None, dry_run: bool) -> None:
    from trainer.data.entries import clear_entries, list_entries, select_entries
    from trainer.fileio import cache_root

    rows = list_entries()
    chosen = select_entries(rows, older_than_days=older_than, max_bytes=max_size)
    busy = [r for r in chosen if r.state in ("in use", "being built")]
    if dry_run:
        removed, kept = [r for r in chosen if r not in busy], busy
    else:
        removed, kept = clear_entries(chosen)
    verb = "Would remove" if dry_run else "Removed"
    for r in removed:
        print(f"{verb} {r.label} ({size_text(r.size)}, last used "
              f"{_age(time.time() - r.last_used)})")
    for r in kept:
        print(f"Kept {r.label}: a run is using or building it")
    freed = sum(r.size for r in removed)
    left = sum(r.size for r in rows) - freed
    print(f"{verb} {len(removed)} entr{'y' if len(removed) == 1 else 'ies'} ({size_text(freed)})"
          f" from {cache_root()}; {size_text(left)} {'would ' if dry_run else ''}remain"
          + (f", {len(kept)} in use kept." if kept else "."))


def main(argv: Sequence[str] | None = None, prog: str = "mstrain cache") -> int:
    """Runs ``mstrain cache``; returns the exit status."""

    def command() -> None:
        parser = build_parser(prog)
        args = parser.parse_args(argv)
        if args.action is None:
            parser.print_usage(sys.stderr)
            raise ConfigError(f"'{prog}' needs an action: list or clear. Run '{prog} --help' "
                              "for the options.")
        if args.action == "list":
            _list(args.json)
        else:
            _clear(args.older_than, args.max_size, args.dry_run)

    return run_reporting_errors(command)
