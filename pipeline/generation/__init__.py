"""Synthetic data: scenario idea → document → the persona's response, as training examples."""
