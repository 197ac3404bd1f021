"""Reproducibility package for He et al., Identity Mappings in Deep Residual Networks (ECCV 2016): `python -m reproduce <command>`; the README's code map says what each folder holds."""
