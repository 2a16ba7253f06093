"""The inference service: the perception stack's local API over a Unix socket
(docs/spec/serve-v1.md). ONNX Runtime, numpy and OpenCV only: it never imports torch, libp2p
or web3 (tests/test_layers.py), so learning cannot disturb it."""
