"""The front: small widget classes that read the backend in :mod:`hubwidgets.model`."""
