"""``python -m taskmask``: the command line (see `taskmask.cli`)."""

from taskmask.cli import run

if __name__ == "__main__":
    run()
