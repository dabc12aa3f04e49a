"""``python -m taskmask``: the command line (see `taskmask.app.cli`)."""

from taskmask.app.cli import run

if __name__ == "__main__":
    run()
