"""modelci: commit-to-production for scikit-learn models on GitLab CI/CD."""
__version__ = "0.1.0"
