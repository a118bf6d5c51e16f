"""Sub-commands of `fedxray-central`, each exposing `register(subparsers)`."""
