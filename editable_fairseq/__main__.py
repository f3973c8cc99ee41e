"""``python -m editable_fairseq``: print the folder to pass to fairseq's ``--user-dir``."""
from __future__ import annotations

import os


def user_dir() -> str:
    """Absolute path of this plugin's folder (what ``fairseq-* --user-dir`` needs)."""
    return os.path.dirname(os.path.abspath(__file__))


def main() -> None:
    print(user_dir())


if __name__ == "__main__":
    main()
