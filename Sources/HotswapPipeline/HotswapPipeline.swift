// Pipeline pieces live here.
