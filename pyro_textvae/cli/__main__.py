"""``python -m pyro_textvae.cli`` (and ``torchrun -m pyro_textvae.cli``): the ``textvae`` command."""
import sys

from . import main

sys.exit(main())
