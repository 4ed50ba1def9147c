"""Run a command's ``main()`` so that our configuration and run errors read as one line, not a
traceback (the runtime's ``eexit-transcribe`` and ``espnet_eexit.bin.*``)."""
import sys
from typing import Callable, List, Optional

from eexit_runtime.errors import EarlyExitConfigError, EarlyExitRunError


def run_main(main: Callable[[Optional[List[str]]], None], cmd: Optional[List[str]] = None) -> None:
    """``main(cmd)``; a bad option or input exits 2, a run stopped by its surroundings exits 1."""
    try:
        main(cmd)
    except (EarlyExitConfigError, EarlyExitRunError) as e:
        prog = sys.argv[0] if cmd is None else main.__module__
        print(f"{prog}: error: {e}", file=sys.stderr)
        sys.exit(2 if isinstance(e, EarlyExitConfigError) else 1)
