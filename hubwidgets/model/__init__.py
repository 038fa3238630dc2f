"""The backend: TensorFlow objects in, plain dataclasses out.  Never imports widgets."""
