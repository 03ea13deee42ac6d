"""Remove the files of the options that were turned off (cookiecutter renders every file of the template)."""

import shutil
import sys
from pathlib import Path

SLUG = {{ cookiecutter.project_slug | tojson }}
DATABASE = {{ "True" if cookiecutter.database else "False" }}

DATABASE_FILES = [
    "alembic.ini",
    f"{SLUG}/alembic",
    f"{SLUG}/db.py",
    f"{SLUG}/models.py",
    "tests/test_items.py",
]


def main() -> int:
    project = Path.cwd()
    if not DATABASE:
        for name in DATABASE_FILES:
            path = project / name
            if path.is_dir():
                shutil.rmtree(path)
            elif path.exists():
                path.unlink()
    return 0


if __name__ == "__main__":
    sys.exit(main())
