"""SQL for the API: small keyword-only functions; routes never build queries themselves."""
