"""The web app (Gradio): one module per tab, built by plain functions a test can call without a server.

    styles.py    Style, the BN+IN pair, the registry of shipped and user-trained styles
    uploads.py   safe photo uploads, results as files, the example photos
    compare.py   "Compare": every norm's model on the user's photo
    why_in.py    "Why IN?": the norms explained, live experiments, flicker
    video.py     "Video" and "Webcam"
    train.py     "Train a style": a view over the job API
    report.py    "Training report"
    server.py    the whole Blocks and ``stylenet app``
"""
