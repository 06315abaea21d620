"""Evaluation: contestants, prompt sets, judges, Bradley-Terry ratings, leaderboards and reports."""
