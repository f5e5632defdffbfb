"""stylenet: fast neural style transfer with pluggable normalization (BN vs IN, and LN, GN)."""
__version__ = "0.1.0"
