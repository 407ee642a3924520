{{/* Names, labels and the guards every template relies on. */}}

{{- define "agentbot.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* The release's base name, at most 54 characters so that suffixed names stay DNS labels. */}}
{{- define "agentbot.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 54 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 54 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 54 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{- define "agentbot.internalServiceName" -}}
{{- printf "%s-internal" (include "agentbot.fullname" .) }}
{{- end }}

{{- define "agentbot.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Labels of the bot's objects. */}}
{{- define "agentbot.labels" -}}
{{ include "agentbot.commonLabels" . }}
app.kubernetes.io/component: bot
{{- end }}

{{/* Labels of the objects that concern sandboxes (their NetworkPolicy, the RuntimeClass). */}}
{{- define "agentbot.sandboxLabels" -}}
{{ include "agentbot.commonLabels" . }}
app.kubernetes.io/component: sandbox
{{- end }}

{{- define "agentbot.commonLabels" -}}
helm.sh/chart: {{ include "agentbot.chart" . }}
app.kubernetes.io/name: {{ include "agentbot.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: agentbot
{{- end }}

{{/* Selects the bot's pods; sandbox pods differ in their component label. */}}
{{- define "agentbot.selectorLabels" -}}
app.kubernetes.io/name: {{ include "agentbot.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: bot
{{- end }}

{{/* The executor labels every sandbox pod with exactly these (bot/manifests.py). */}}
{{- define "agentbot.sandboxSelectorLabels" -}}
app.kubernetes.io/name: agentbot
app.kubernetes.io/component: sandbox
{{- end }}

{{- define "agentbot.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "agentbot.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/* repository:tag or repository@digest; the tag defaults to the chart's appVersion. */}}
{{- define "agentbot.imageRef" -}}
{{- if .image.digest }}
{{- printf "%s@%s" .image.repository .image.digest }}
{{- else }}
{{- printf "%s:%s" .image.repository (default .appVersion .image.tag) }}
{{- end }}
{{- end }}

{{- define "agentbot.image" -}}
{{- include "agentbot.imageRef" (dict "image" .Values.image "appVersion" .Chart.AppVersion) }}
{{- end }}

{{- define "agentbot.sandboxImage" -}}
{{- include "agentbot.imageRef" (dict "image" .Values.sandbox.image "appVersion" .Chart.AppVersion) }}
{{- end }}

{{- define "agentbot.internalUrl" -}}
{{- printf "http://%s.%s.svc.%s:%v" (include "agentbot.internalServiceName" .) .Release.Namespace .Values.clusterDomain .Values.internalService.port }}
{{- end }}

{{/* Where GitHub should deliver webhooks, or "" when nothing public is configured. */}}
{{- define "agentbot.publicUrl" -}}
{{- if .Values.config.publicUrl }}
{{- .Values.config.publicUrl | trimSuffix "/" }}
{{- else if and .Values.ingress.enabled .Values.ingress.host }}
{{- printf "%s://%s" (ternary "https" "http" (gt (len .Values.ingress.tls) 0)) .Values.ingress.host }}
{{- end }}
{{- end }}

{{- define "agentbot.sqliteDir" -}}/var/lib/agentbot{{- end }}

{{/*
Guards for values no schema can express. They run from the Deployment, so `helm template`,
`helm install` and `helm lint` all stop with the same message.
*/}}
{{- define "agentbot.validate" -}}
{{- if not .Values.github.existingSecret }}
{{- fail "github.existingSecret is required: name the Secret that holds the App id, private key and webhook secret (see the chart's values.yaml)" }}
{{- end }}
{{- if and (gt (int .Values.replicaCount) 1) (not .Values.postgresql.enabled) }}
{{- fail (printf "replicaCount is %d but the database is SQLite: SQLite serves one replica only; set postgresql.enabled=true with postgresql.existingSecret, or replicaCount=1" (int .Values.replicaCount)) }}
{{- end }}
{{- if and .Values.postgresql.enabled (not .Values.postgresql.existingSecret) }}
{{- fail "postgresql.existingSecret is required when postgresql.enabled is true: name the Secret that holds the database URL" }}
{{- end }}
{{- if and .Values.runtimeClass.create (not .Values.sandbox.runtimeClassName) }}
{{- fail "runtimeClass.create needs sandbox.runtimeClassName: it names the RuntimeClass to create" }}
{{- end }}
{{- if and .Values.ingress.enabled (not .Values.ingress.host) }}
{{- fail "ingress.host is required when ingress.enabled is true" }}
{{- end }}
{{- end }}
