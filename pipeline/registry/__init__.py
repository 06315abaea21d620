"""The model registry: deploy, roll back, archive; figures; export; prompt versions and prompt-only variants."""
