"""`python -m abe COMMAND`: see abe.commands.main."""

import sys

from abe.commands.main import main

sys.exit(main())
