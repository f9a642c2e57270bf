"""``python -m ossagent.agent.cli``: the same as the ``ossagent`` command."""

import sys

from ossagent.agent.cli.main import main

if __name__ == "__main__":
    sys.exit(main())
