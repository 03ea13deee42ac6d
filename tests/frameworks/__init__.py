"""Small apps of other Python web frameworks, wired with the c2casgiutils middlewares and the /c2c app."""
