"""coevo_ray: Ray-native text clustering where a small LLM and an embedding model train each other."""

__version__ = "0.1.0"
