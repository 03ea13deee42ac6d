"""Applications run by uvicorn behind real reverse proxies (nginx, Apache httpd, HAProxy)."""
