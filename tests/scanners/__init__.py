"""Test helpers around the npm scanners of this folder: an HTTPS front, a CDN stand-in, the graders."""
