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

{{/* The gateway's Service, and its Deployment when it has one. */}}
{{- define "agentbot.gatewayName" -}}
{{- printf "%s-gateway" (include "agentbot.fullname" .) }}
{{- end }}

{{- define "agentbot.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Labels of the bot's objects. */}}
{{- define "agentbot.labels" -}}
{{ include "agentbot.commonLabels" . }}
app.kubernetes.io/component: bot
{{- end }}

{{/* Labels of the gateway's objects. */}}
{{- define "agentbot.gatewayLabels" -}}
{{ include "agentbot.commonLabels" . }}
app.kubernetes.io/component: gateway
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

{{/* Selects the gateway's own pods (PostgreSQL only; see agentbot.gatewayStandalone). */}}
{{- define "agentbot.gatewaySelectorLabels" -}}
app.kubernetes.io/name: {{ include "agentbot.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: gateway
{{- end }}

{{/*
"true" when the gateway runs as its own Deployment, "" when it is a second container of the
bot's pod. A separate pod needs a database it can reach over the network: PostgreSQL. SQLite is
a file on the bot's ReadWriteOnce volume, which only a container of the bot's pod can open.
*/}}
{{- define "agentbot.gatewayStandalone" -}}
{{- if .Values.postgresql.enabled }}true{{ end }}
{{- end }}

{{/* The pods that serve the gateway's ports: its own, or the bot's when it is a sidecar. */}}
{{- define "agentbot.gatewayPodSelectorLabels" -}}
{{- if include "agentbot.gatewayStandalone" . }}
{{- include "agentbot.gatewaySelectorLabels" . }}
{{- else }}
{{- include "agentbot.selectorLabels" . }}
{{- end }}
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

{{/*
The gateway's ServiceAccount: its own, bound to no Role, so that neither a token nor a cloud
identity given to the bot's account ever reaches the gateway.
*/}}
{{- define "agentbot.gatewayServiceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- include "agentbot.gatewayName" . }}
{{- else }}
{{- "default" }}
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

{{- define "agentbot.gatewayHost" -}}
{{- $name := include "agentbot.gatewayName" . }}
{{- printf "%s.%s.svc.%s" $name .Release.Namespace .Values.clusterDomain }}
{{- end }}

{{/* Where sandboxes reach the gateway's HTTP port (model APIs and git)... */}}
{{- define "agentbot.gatewayUrl" -}}
{{- printf "http://%s:%v" (include "agentbot.gatewayHost" .) .Values.gateway.service.port }}
{{- end }}

{{/* ...and its egress proxy. */}}
{{- define "agentbot.gatewayProxyUrl" -}}
{{- printf "http://%s:%v" (include "agentbot.gatewayHost" .) .Values.gateway.service.proxyPort }}
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

{{- define "agentbot.githubKeyDir" -}}/var/run/secrets/agentbot/github{{- end }}

{{/* The pod and container security contexts of the bot and the gateway: PSS restricted. */}}
{{- define "agentbot.podSecurityContext" -}}
runAsNonRoot: true
runAsUser: 10001
runAsGroup: 10001
fsGroup: 10001
fsGroupChangePolicy: OnRootMismatch
seccompProfile:
  type: RuntimeDefault
{{- end }}

{{- define "agentbot.containerSecurityContext" -}}
allowPrivilegeEscalation: false
privileged: false
readOnlyRootFilesystem: true
runAsNonRoot: true
runAsUser: 10001
runAsGroup: 10001
capabilities:
  drop: ["ALL"]
seccompProfile:
  type: RuntimeDefault
{{- end }}

{{/*
Environment both the bot and the gateway read: the App (its key as a file, out of the process
environment), GitHub's API, the database and logging. Never the webhook secret: only the bot
verifies webhooks.
*/}}
{{- define "agentbot.sharedEnv" -}}
- name: GITHUB_APP_ID
  valueFrom:
    secretKeyRef:
      name: {{ .Values.github.existingSecret }}
      key: {{ .Values.github.appIdKey }}
- name: GITHUB_PRIVATE_KEY_PATH
  value: {{ printf "%s/private-key.pem" (include "agentbot.githubKeyDir" .) | quote }}
- name: GITHUB_API_URL
  value: {{ .Values.github.apiUrl | quote }}
- name: AGENTBOT_DATABASE_URL
{{- if .Values.postgresql.enabled }}
  valueFrom:
    secretKeyRef:
      name: {{ .Values.postgresql.existingSecret }}
      key: {{ .Values.postgresql.urlKey }}
{{- else }}
  value: {{ printf "sqlite+aiosqlite:///%s/agentbot.db" (include "agentbot.sqliteDir" .) | quote }}
{{- end }}
- name: AGENTBOT_LOG_LEVEL
  value: {{ .Values.config.logLevel | quote }}
- name: AGENTBOT_LOG_FORMAT
  value: {{ .Values.config.logFormat | quote }}
{{- end }}

{{/* The App's private key, as the one file of a Secret volume named `github-app`. */}}
{{- define "agentbot.githubAppVolume" -}}
- name: github-app
  secret:
    secretName: {{ .Values.github.existingSecret }}
    # Group-readable: files are owned by root and the fsGroup, and agentbot is not root.
    defaultMode: 0440
    items:
      - key: {{ .Values.github.privateKeyKey }}
        path: private-key.pem
{{- end }}

{{/*
The gateway's container, in its own Deployment or beside the bot (agentbot.gatewayStandalone).
It alone holds the agents' Secret (the model providers' keys), as environment variables.
*/}}
{{- define "agentbot.gatewayContainer" -}}
- name: gateway
  image: {{ include "agentbot.image" . | quote }}
  imagePullPolicy: {{ .Values.image.pullPolicy }}
  args: ["gateway"]
  ports:
    - name: gateway
      containerPort: {{ .Values.containerPorts.gateway }}
      protocol: TCP
    - name: gateway-proxy
      containerPort: {{ .Values.containerPorts.gatewayProxy }}
      protocol: TCP
  {{- with .Values.agents.existingSecret }}
  envFrom:
    - secretRef:
        name: {{ . }}
  {{- end }}
  env:
    {{- include "agentbot.sharedEnv" . | nindent 4 }}
    - name: AGENTBOT_GATEWAY_PORT
      value: {{ int64 .Values.containerPorts.gateway | quote }}
    - name: AGENTBOT_GATEWAY_PROXY_PORT
      value: {{ int64 .Values.containerPorts.gatewayProxy | quote }}
    - name: AGENTBOT_EGRESS_ALLOW
      value: {{ join "," .Values.gateway.egressAllow | quote }}
    - name: AGENTBOT_EGRESS_REPO_ALLOW
      value: {{ join "," .Values.gateway.egressRepoAllow | quote }}
    {{- with .Values.gateway.anthropicUrl }}
    - name: AGENTBOT_ANTHROPIC_URL
      value: {{ . | quote }}
    {{- end }}
    {{- with .Values.gateway.openaiUrl }}
    - name: AGENTBOT_OPENAI_URL
      value: {{ . | quote }}
    {{- end }}
    {{- if .Values.gateway.prices }}
    - name: AGENTBOT_PRICE_TABLE
      value: {{ include "agentbot.gatewayPricesFile" . | quote }}
    {{- end }}
    {{- with .Values.gateway.extraEnv }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
  startupProbe:
    httpGet:
      path: /healthz
      port: gateway
    periodSeconds: {{ .Values.gateway.startupProbe.periodSeconds }}
    timeoutSeconds: {{ .Values.gateway.startupProbe.timeoutSeconds }}
    failureThreshold: {{ .Values.gateway.startupProbe.failureThreshold }}
  livenessProbe:
    httpGet:
      path: /healthz
      port: gateway
    periodSeconds: {{ .Values.gateway.livenessProbe.periodSeconds }}
    timeoutSeconds: {{ .Values.gateway.livenessProbe.timeoutSeconds }}
    failureThreshold: {{ .Values.gateway.livenessProbe.failureThreshold }}
  readinessProbe:
    httpGet:
      path: /readyz
      port: gateway
    periodSeconds: {{ .Values.gateway.readinessProbe.periodSeconds }}
    timeoutSeconds: {{ .Values.gateway.readinessProbe.timeoutSeconds }}
    failureThreshold: {{ .Values.gateway.readinessProbe.failureThreshold }}
  {{- with .Values.gateway.resources }}
  resources:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  securityContext:
    {{- include "agentbot.containerSecurityContext" . | nindent 4 }}
  volumeMounts:
    - name: github-app
      mountPath: {{ include "agentbot.githubKeyDir" . }}
      readOnly: true
    - name: gateway-tmp
      mountPath: /tmp
    {{- if not (include "agentbot.gatewayStandalone" .) }}
    # SQLite: the bot's database file, on the bot's volume.
    - name: data
      mountPath: {{ include "agentbot.sqliteDir" . }}
    {{- end }}
    {{- if .Values.gateway.prices }}
    - name: gateway-prices
      mountPath: {{ include "agentbot.gatewayPricesDir" . }}
      readOnly: true
    {{- end }}
{{- end }}

{{/*
The operator's price table (`gateway.prices`), which the gateway reads over its built-in one:
a ConfigMap, mounted into the gateway's container as one file named by AGENTBOT_PRICE_TABLE.
The gateway reads it at start, so its pods carry a checksum of it and roll when it changes.
*/}}
{{- define "agentbot.gatewayPricesName" -}}
{{- printf "%s-gateway-prices" (include "agentbot.fullname" .) }}
{{- end }}

{{- define "agentbot.gatewayPricesDir" -}}/etc/agentbot/prices{{- end }}

{{- define "agentbot.gatewayPricesFile" -}}
{{- printf "%s/prices.yml" (include "agentbot.gatewayPricesDir" .) }}
{{- end }}

{{/* The file's text: the form of bot/config/prices.yml, `models:` and the map. */}}
{{- define "agentbot.gatewayPricesYaml" -}}
{{- dict "models" .Values.gateway.prices | toYaml }}
{{- end }}

{{- define "agentbot.gatewayPricesVolume" -}}
- name: gateway-prices
  configMap:
    name: {{ include "agentbot.gatewayPricesName" . }}
    items:
      - key: prices.yml
        path: prices.yml
{{- end }}

{{- define "agentbot.gatewayPricesChecksum" -}}
{{- include "agentbot.gatewayPricesYaml" . | sha256sum }}
{{- end }}

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
{{- $cp := .Values.containerPorts }}
{{- $ports := list $cp.http $cp.internal $cp.gateway $cp.gatewayProxy }}
{{- if ne (len (uniq $ports)) (len $ports) }}
{{- fail (printf "containerPorts must be four different ports, as the gateway may share the bot's pod: %v" $ports) }}
{{- end }}
{{- if and .Values.ingress.enabled (not .Values.ingress.host) }}
{{- fail "ingress.host is required when ingress.enabled is true" }}
{{- end }}
{{- end }}

{{/*
The ingress rule of the gateway's two ports: from sandbox pods and `gateway.networkPolicy
.ingressFrom`, or from anywhere when `gateway.networkPolicy.enabled` is false (which matters only
where the rule is part of the bot's policy, the gateway being its sidecar).
*/}}
{{- define "agentbot.gatewayIngressRule" -}}
- ports:
    - port: gateway
      protocol: TCP
    - port: gateway-proxy
      protocol: TCP
  {{- if .Values.gateway.networkPolicy.enabled }}
  from:
    - podSelector:
        matchLabels:
          {{- include "agentbot.sandboxSelectorLabels" . | nindent 10 }}
    {{- with .Values.gateway.networkPolicy.ingressFrom }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
  {{- end }}
{{- end }}
