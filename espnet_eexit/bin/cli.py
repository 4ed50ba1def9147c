"""Run an ESPnet ``main()`` so that our configuration errors read as one line, not a traceback."""
import sys
from typing import Callable, List, Optional

from espnet_eexit.errors import EarlyExitConfigError


def run_main(main: Callable[[Optional[List[str]]], None], cmd: Optional[List[str]] = None) -> None:
    try:
        main(cmd)
    except EarlyExitConfigError as e:
        prog = sys.argv[0] if cmd is None else main.__module__
        print(f"{prog}: error: {e}", file=sys.stderr)
        sys.exit(2)
