"""What model families share: front-ends, training loop pieces, metrics."""
