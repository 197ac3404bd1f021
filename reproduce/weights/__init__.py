"""A finished run's weights: loaded safely, evaluated again, published as DVC artifacts."""
