"""Thin per-cloud entry points (AWS Lambda, Google Cloud Functions, Azure Functions).

They parse the platform event, load the policy, call :mod:`cloudkeep` and shape the reply. The
scheduled handlers arrive with the schedules work; until then the CLI is the way to run the core.
"""
