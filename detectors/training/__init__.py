"""Training the crowd-density head on frozen YOLOX-Nano features (``guanjia models train-crowd``).

Run-time code never imports this package; it needs only numpy, OpenCV, PyAV and the ``onnx`` package.
"""
