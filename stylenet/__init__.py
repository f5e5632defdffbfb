"""stylenet: fast neural style transfer with pluggable normalization (BN vs IN, and LN, GN)."""
__version__ = "0.2.0"  # 0.2: the content loss is a mean of per-image relative errors
