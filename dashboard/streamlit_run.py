"""The dashboard's server process: ``streamlit run dashboard/app.py`` with the pages' first views computed at start.

``closewatch dashboard`` and ``closewatch up`` start this instead of the bare
``streamlit`` command (same arguments). Before Streamlit serves anything it
starts a ``Warmer`` (dashboard/queries/shared.py) in a background thread,
which imports the pages' modules and runs each page's default reads, then
repeats them whenever new data arrives; so the first visitor after a start
or after a load does not wait for them. Set ``CLOSEWATCH_DASHBOARD_WARM=0``
to serve without it.
"""

from __future__ import annotations

import os
import sys


def _warm_imports() -> None:
    """What every page run needs, imported once here rather than by the first visitor's run."""
    import altair  # noqa: F401

    from closewatch.dashboard import ui  # noqa: F401


def main(argv: list[str]) -> int:
    if os.environ.get("CLOSEWATCH_DASHBOARD_WARM", "1") != "0":
        import logging

        from closewatch.dashboard.queries.shared import Warmer

        logging.basicConfig(format="%(asctime)s %(levelname)s %(name)s: %(message)s")
        logging.getLogger("closewatch.dashboard").setLevel(logging.INFO)

        Warmer(before=_warm_imports).start()
    from streamlit.web import cli as streamlit_cli

    sys.argv = ["streamlit", *argv]
    return streamlit_cli.main()


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
