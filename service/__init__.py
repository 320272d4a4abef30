"""The refine service: FastAPI + onnxruntime, and the RQ job functions that need no torch.

Nothing under service/ imports torch (tests/service/test_no_torch.py holds us to it).
"""
