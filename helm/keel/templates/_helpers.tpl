{{/* Names */}}
{{- define "keel.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "keel.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- $name := default .Chart.Name .Values.nameOverride -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{- define "keel.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* Labels: include "keel.labels" (dict "root" $ "component" "api") */}}
{{- define "keel.selectorLabels" -}}
app.kubernetes.io/name: {{ include "keel.name" .root }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{- define "keel.labels" -}}
helm.sh/chart: {{ include "keel.chart" .root }}
{{ include "keel.selectorLabels" . }}
app.kubernetes.io/version: {{ .root.Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .root.Release.Service }}
app.kubernetes.io/part-of: keel
{{- end -}}

{{- define "keel.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) -}}
{{- end -}}

{{- define "keel.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "keel.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{- define "keel.secretName" -}}
{{- default (printf "%s-secrets" (include "keel.fullname" .)) .Values.secrets.existingSecret -}}
{{- end -}}

{{- define "keel.blobClaimName" -}}
{{- default (printf "%s-blobs" (include "keel.fullname" .)) .Values.blobStore.persistence.existingClaim -}}
{{- end -}}

{{/* Worker groups that run: enabled, and `slack` only with slack.enabled. JSON list of names. */}}
{{- define "keel.workerGroups" -}}
{{- $groups := list -}}
{{- range $name, $group := .Values.workers -}}
{{- if and $group.enabled (or (ne $name "slack") $.Values.slack.enabled) -}}
{{- $groups = append $groups $name -}}
{{- end -}}
{{- end -}}
{{- toJson $groups -}}
{{- end -}}

{{/* A worker group's drain time (its own shutdownGraceSeconds, else worker.shutdownGraceSeconds). */}}
{{- define "keel.workerGrace" -}}
{{- $group := .group -}}
{{- if hasKey $group "shutdownGraceSeconds" -}}
{{- int $group.shutdownGraceSeconds -}}
{{- else -}}
{{- int .root.Values.worker.shutdownGraceSeconds -}}
{{- end -}}
{{- end -}}

{{/*
The keys the Keel Secret holds, as a JSON list: the three every process needs, those the
values call for (LLM, EntraID, Slack, Temporal API key), and either the non-empty
secrets.values (chart-made Secret) or secrets.existingSecretExtraKeys.
*/}}
{{- define "keel.requiredSecretKeys" -}}
{{- $keys := list "KEEL_SECRET_KEY" "KEEL_DATABASE_URL" "KEEL_REDIS_URL" -}}
{{- if eq .Values.llm.provider "openai" -}}
{{- $keys = append $keys "KEEL_LLM_API_KEY" -}}
{{- end -}}
{{- if and (eq .Values.llm.provider "azure") (not .Values.llm.azure.useEntra) -}}
{{- $keys = append $keys "KEEL_AZURE_OPENAI_API_KEY" -}}
{{- end -}}
{{- if and .Values.entra.tenantId .Values.entra.clientSecret -}}
{{- $keys = append $keys "KEEL_ENTRA_CLIENT_SECRET" -}}
{{- end -}}
{{- if .Values.slack.enabled -}}
{{- $keys = concat $keys (list "KEEL_SLACK_BOT_TOKEN" "KEEL_SLACK_SIGNING_SECRET") -}}
{{- end -}}
{{- if .Values.slack.socketMode.enabled -}}
{{- $keys = append $keys "KEEL_SLACK_APP_TOKEN" -}}
{{- end -}}
{{- if .Values.temporal.apiKey.enabled -}}
{{- $keys = append $keys "KEEL_TEMPORAL_API_KEY" -}}
{{- end -}}
{{- toJson $keys -}}
{{- end -}}

{{- define "keel.secretKeys" -}}
{{- $keys := include "keel.requiredSecretKeys" . | fromJsonArray -}}
{{- if .Values.secrets.existingSecret -}}
{{- $keys = concat $keys .Values.secrets.existingSecretExtraKeys -}}
{{- else -}}
{{- range $key, $value := .Values.secrets.values -}}
{{- if $value -}}
{{- $keys = append $keys $key -}}
{{- end -}}
{{- end -}}
{{- end -}}
{{- toJson (uniq $keys) -}}
{{- end -}}

{{- define "keel.webBaseUrl" -}}
{{- if .Values.webBaseUrl -}}
{{- .Values.webBaseUrl -}}
{{- else if .Values.ingress.enabled -}}
{{- printf "https://%s" .Values.ingress.host -}}
{{- end -}}
{{- end -}}

{{/* Paths inside the containers */}}
{{- define "keel.secretsDir" -}}/run/secrets/keel{{- end -}}
{{- define "keel.temporalTlsDir" -}}/etc/keel/temporal-tls{{- end -}}
{{- define "keel.cacheDir" -}}/var/cache/keel{{- end -}}

{{/*
The non-secret settings, as a YAML map: the ConfigMap's data, and the migration Job's env (the
hook runs before the ConfigMap exists on a first install). The chart's own keys win over `config`.
*/}}
{{- define "keel.configData" -}}
{{- $data := dict
  "KEEL_ENV" "production"
  "KEEL_AUTH_MODE" "oidc"
  "KEEL_LOG_JSON" "true"
  "KEEL_LOG_LEVEL" .Values.logLevel
  "KEEL_DATA_DIR" "/tmp/keel-data"
  "KEEL_TEMPORAL_ADDRESS" .Values.temporal.address
  "KEEL_TEMPORAL_NAMESPACE" .Values.temporal.namespace
  "KEEL_QDRANT_URL" .Values.qdrant.url
  "KEEL_BLOB_PATH" .Values.blobStore.mountPath
  "KEEL_METRICS_PORT" (toString .Values.api.metricsPort)
  "HF_HOME" (printf "%s/huggingface" (include "keel.cacheDir" .))
  "XDG_CACHE_HOME" (include "keel.cacheDir" .)
-}}
{{- if eq .Values.llm.provider "openai" -}}
{{- $_ := set $data "KEEL_LLM_MODEL" .Values.llm.openai.model -}}
{{- if .Values.llm.openai.baseUrl -}}
{{- $_ := set $data "KEEL_LLM_BASE_URL" .Values.llm.openai.baseUrl -}}
{{- end -}}
{{- else if eq .Values.llm.provider "azure" -}}
{{- $_ := set $data "KEEL_AZURE_OPENAI_ENDPOINT" .Values.llm.azure.endpoint -}}
{{- $_ := set $data "KEEL_AZURE_OPENAI_DEPLOYMENT" .Values.llm.azure.deployment -}}
{{- $_ := set $data "KEEL_AZURE_OPENAI_API_VERSION" .Values.llm.azure.apiVersion -}}
{{- $_ := set $data "KEEL_AZURE_OPENAI_USE_ENTRA" (toString .Values.llm.azure.useEntra) -}}
{{- end -}}
{{- if .Values.entra.tenantId -}}
{{- $_ := set $data "KEEL_ENTRA_TENANT_ID" .Values.entra.tenantId -}}
{{- $_ := set $data "KEEL_ENTRA_CLIENT_ID" .Values.entra.clientId -}}
{{- end -}}
{{- with include "keel.webBaseUrl" . -}}
{{- $_ := set $data "KEEL_WEB_BASE_URL" . -}}
{{- end -}}
{{- if .Values.temporal.tls.enabled -}}
{{- $dir := include "keel.temporalTlsDir" . -}}
{{- with .Values.temporal.tls.certKey -}}
{{- $_ := set $data "KEEL_TEMPORAL_TLS_CERT_PATH" (printf "%s/%s" $dir .) -}}
{{- end -}}
{{- with .Values.temporal.tls.keyKey -}}
{{- $_ := set $data "KEEL_TEMPORAL_TLS_KEY_PATH" (printf "%s/%s" $dir .) -}}
{{- end -}}
{{- with .Values.temporal.tls.caKey -}}
{{- $_ := set $data "KEEL_TEMPORAL_TLS_CA_PATH" (printf "%s/%s" $dir .) -}}
{{- end -}}
{{- end -}}
{{- with .Values.otel.endpoint -}}
{{- $_ := set $data "OTEL_EXPORTER_OTLP_ENDPOINT" . -}}
{{- end -}}
{{- with .Values.otel.protocol -}}
{{- $_ := set $data "OTEL_EXPORTER_OTLP_PROTOCOL" . -}}
{{- end -}}
{{- with .Values.otel.resourceAttributes -}}
{{- $_ := set $data "OTEL_RESOURCE_ATTRIBUTES" . -}}
{{- end -}}
{{- $user := dict -}}
{{- range $key, $value := .Values.config -}}
{{- $_ := set $user $key (toString $value) -}}
{{- end -}}
{{- toYaml (merge $data $user) -}}
{{- end -}}

{{/*
Environment of a Keel container: include "keel.env" (dict "root" $ "component" "api" "extra" list)
The ConfigMap comes in through envFrom; this adds the secrets, the component's service name and
extraEnv.
*/}}
{{- define "keel.env" -}}
{{- $root := .root -}}
{{- $secretName := default (include "keel.secretName" $root) .secretName -}}
- name: OTEL_SERVICE_NAME
  value: {{ printf "keel-%s" .component | quote }}
{{- range $key := include "keel.secretKeys" $root | fromJsonArray }}
{{- if $root.Values.secrets.mountAsFiles }}
- name: {{ printf "%s_FILE" $key }}
  value: {{ printf "%s/%s" (include "keel.secretsDir" $root) $key | quote }}
{{- else }}
- name: {{ $key }}
  valueFrom:
    secretKeyRef:
      name: {{ $secretName }}
      key: {{ $key }}
{{- end }}
{{- end }}
{{- with $root.Values.extraEnv }}
{{ toYaml . }}
{{- end }}
{{- with .extra }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{/* Volumes: include "keel.volumes" (dict "root" $ "blobs" true) */}}
{{- define "keel.volumes" -}}
{{- $root := .root -}}
- name: tmp
  emptyDir:
    sizeLimit: {{ $root.Values.scratch.tmpSizeLimit }}
- name: cache
  emptyDir:
    sizeLimit: {{ $root.Values.scratch.cacheSizeLimit }}
{{- if $root.Values.secrets.mountAsFiles }}
- name: secrets
  secret:
    secretName: {{ include "keel.secretName" $root }}
    defaultMode: 0440
{{- end }}
{{- if $root.Values.temporal.tls.enabled }}
- name: temporal-tls
  secret:
    secretName: {{ $root.Values.temporal.tls.secretName }}
    defaultMode: 0440
{{- end }}
{{- if .blobs }}
- name: blobs
  persistentVolumeClaim:
    claimName: {{ include "keel.blobClaimName" $root }}
{{- end }}
{{- end -}}

{{- define "keel.volumeMounts" -}}
{{- $root := .root -}}
- name: tmp
  mountPath: /tmp
- name: cache
  mountPath: {{ include "keel.cacheDir" $root }}
{{- if $root.Values.secrets.mountAsFiles }}
- name: secrets
  mountPath: {{ include "keel.secretsDir" $root }}
  readOnly: true
{{- end }}
{{- if $root.Values.temporal.tls.enabled }}
- name: temporal-tls
  mountPath: {{ include "keel.temporalTlsDir" $root }}
  readOnly: true
{{- end }}
{{- if .blobs }}
- name: blobs
  mountPath: {{ $root.Values.blobStore.mountPath }}
{{- end }}
{{- end -}}

{{/* Checksums that roll the pods when the settings or the chart-made Secret change. */}}
{{- define "keel.podAnnotations" -}}
checksum/config: {{ include "keel.configData" . | sha256sum }}
{{- if not .Values.secrets.existingSecret }}
checksum/secret: {{ toJson .Values.secrets.values | sha256sum }}
{{- end }}
{{- with .Values.podAnnotations }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{/* The pod spec fields every Keel pod shares. */}}
{{- define "keel.podCommon" -}}
serviceAccountName: {{ include "keel.serviceAccountName" . }}
automountServiceAccountToken: false
securityContext:
  {{- toYaml .Values.podSecurityContext | nindent 2 }}
{{- with .Values.imagePullSecrets }}
imagePullSecrets:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- end -}}

{{/* An HTTP probe: include "keel.probe" (dict "path" "/health/live" "port" "http" "settings" .Values.api.livenessProbe) */}}
{{- define "keel.probe" -}}
httpGet:
  path: {{ .path }}
  port: {{ .port }}
{{ toYaml .settings }}
{{- end -}}
