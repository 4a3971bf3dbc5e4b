// Model definitions live here.
