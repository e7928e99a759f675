"""NVP: Next Vector Prediction, the physics-informed next-state forecaster."""
