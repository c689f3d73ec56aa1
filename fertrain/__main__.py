"""``python -m fertrain [overrides]``: the training entry point (see :mod:`fertrain.train`)."""

from fertrain.train import main

if __name__ == "__main__":
    main()
