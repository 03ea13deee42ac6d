"""Admin tools of the /c2c sub-app: index page, logging levels, headers echo, debug, versions."""
