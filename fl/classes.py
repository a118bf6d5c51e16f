"""The four classes FedXray predicts, in the order of the model's output (no TensorFlow here)."""

CLASSES = ("Covid", "Normal", "Pneumonia-Bacterial", "Pneumonia-Viral")

CLASS_LABELS = {
    "Covid": "COVID-19",
    "Normal": "Normal",
    "Pneumonia-Bacterial": "Bacterial pneumonia",
    "Pneumonia-Viral": "Viral pneumonia",
}
