{{/* Chart name, truncated to the 63 characters of a DNS label. */}}
{{- define "mailpipe.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* Release-qualified name; a component's objects are named <fullname>-<component>. */}}
{{- define "mailpipe.fullname" -}}
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

{{- define "mailpipe.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* Labels of every object. */}}
{{- define "mailpipe.labels" -}}
helm.sh/chart: {{ include "mailpipe.chart" . }}
app.kubernetes.io/name: {{ include "mailpipe.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: mailpipe
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{/* Selector labels of one component; call with (dict "root" $ "component" "parser"). */}}
{{- define "mailpipe.selectorLabels" -}}
app.kubernetes.io/name: {{ include "mailpipe.name" .root }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{- define "mailpipe.componentLabels" -}}
{{ include "mailpipe.labels" .root }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{- define "mailpipe.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "mailpipe.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{/* Image of a binary: <registry>/<binary>:<tag or appVersion>, or <...>@<digest>. */}}
{{- define "mailpipe.image" -}}
{{- $img := .root.Values.image -}}
{{- if $img.digest -}}
{{- printf "%s/%s@%s" $img.registry .binary $img.digest -}}
{{- else -}}
{{- printf "%s/%s:%s" $img.registry .binary (default .root.Chart.AppVersion $img.tag) -}}
{{- end -}}
{{- end -}}

{{/* Secrets (by reference) a component loads with envFrom; see values.yaml secrets. */}}
{{- define "mailpipe.envFromSecrets" -}}
{{- $root := .root -}}
{{- $component := .component -}}
{{- range $key := list "kafka" "redis" "blobStore" "crm" "webhook" "http" -}}
{{- $s := index $root.Values.secrets $key -}}
{{- if and $s.existingSecret (has $component $s.services) }}
- secretRef:
    name: {{ $s.existingSecret }}
{{- end -}}
{{- end -}}
{{- end -}}

{{/* MAILPIPE_KAFKA_* for the topics job (a hook: it cannot rely on the chart's ConfigMap). */}}
{{- define "mailpipe.kafkaEnv" -}}
- name: MAILPIPE_KAFKA_BROKERS
  value: {{ required "kafka.brokers is required" .Values.kafka.brokers | quote }}
- name: MAILPIPE_KAFKA_CLIENT_ID
  value: {{ .Values.kafka.clientId | quote }}
{{- if .Values.kafka.tls.enabled }}
- name: MAILPIPE_KAFKA_TLS
  value: "true"
{{- if .Values.kafka.tls.insecureSkipVerify }}
- name: MAILPIPE_KAFKA_TLS_INSECURE
  value: "true"
{{- end }}
{{- if .Values.kafka.tls.caSecret }}
- name: MAILPIPE_KAFKA_TLS_CA
  value: /etc/mailpipe/kafka-ca/ca.crt
{{- end }}
{{- end }}
{{- if .Values.kafka.sasl.mechanism }}
- name: MAILPIPE_KAFKA_SASL_MECHANISM
  value: {{ .Values.kafka.sasl.mechanism | quote }}
{{- end }}
{{- end -}}

{{/* Pod security context and container security context shared by every pod. */}}
{{- define "mailpipe.podSecurityContext" -}}
runAsNonRoot: true
runAsUser: 65532
runAsGroup: 65532
fsGroup: 65532
seccompProfile:
  type: RuntimeDefault
{{- end -}}

{{- define "mailpipe.containerSecurityContext" -}}
allowPrivilegeEscalation: false
readOnlyRootFilesystem: true
runAsNonRoot: true
capabilities:
  drop: [ALL]
{{- end -}}
