"""FedXray learning core: model, preprocessing, data, training, metrics, GradCAM, model files, Flower apps."""
