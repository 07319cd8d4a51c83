{{/* The release's name for shoal's objects: <release>-shoal, at most 63 characters. */}}
{{- define "shoal.fullname" -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 55 | trimSuffix "-" -}}
{{- end -}}

{{- define "shoal.labels" -}}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}

{{- define "shoal.selector" -}}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "shoal.image" -}}
{{- printf "%s:%s" .Values.image.repository (.Values.image.tag | default .Chart.AppVersion) -}}
{{- end -}}

{{- define "shoal.secretName" -}}
{{- .Values.token.existingSecret | default (printf "%s-token" (include "shoal.fullname" .)) -}}
{{- end -}}

{{/* The scheduler's address, as workers and clients in the cluster reach it. */}}
{{- define "shoal.schedulerAddress" -}}
{{- printf "tcp://%s-scheduler:%d" (include "shoal.fullname" .) (int .Values.scheduler.port) -}}
{{- end -}}

{{/* The token, from the environment: never on a command line. */}}
{{- define "shoal.tokenEnv" -}}
- name: SHOAL_TOKEN
  valueFrom:
    secretKeyRef:
      name: {{ include "shoal.secretName" . }}
      key: token
{{- end -}}
