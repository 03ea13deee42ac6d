"""Applications run by uvicorn in the admin-tools tests."""
