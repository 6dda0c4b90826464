"""Our TensorFlow-Serving-compatible model server (gRPC 8500 + REST 8501) for machines without Docker.

Modules: ``repository`` (configs, version polling, loading), ``grpc_service`` (PredictionService,
ModelService), ``rest_app`` (Flask factory), ``server`` (both together), ``cli`` (``empathy serve-models``).
Importing a submodule imports TensorFlow; this package's ``__init__`` does not.
"""
