"""Train the arbitrary-style (AdaIN) decoder from a checkout: python scripts/train_adain.py --help
(the code is stylenet/adain_train.py)."""
import sys

from stylenet.adain_train import main

if __name__ == "__main__":
    sys.exit(main())
