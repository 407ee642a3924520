"""Tests of what is deployed: the Helm chart, the Dockerfiles, the workflows, the manifest."""
