{{/*
One Deployment of a mailpipe service; every service's Deployment comes from this template.
Call with (dict "root" $ "name" "parser" "svc" $.Values.services.parser).
*/}}
{{- define "mailpipe.deployment" -}}
{{- $root := .root -}}
{{- $name := .name -}}
{{- $svc := .svc -}}
{{- $ctx := dict "root" $root "component" $name -}}
apiVersion: apps/v1
kind: Deployment
metadata:
  name: {{ include "mailpipe.fullname" $root }}-{{ $name }}
  namespace: {{ $root.Release.Namespace }}
  labels:
    {{- include "mailpipe.componentLabels" $ctx | nindent 4 }}
spec:
  {{- if not (or $svc.autoscaling.enabled (and $svc.keda $svc.keda.enabled)) }}
  replicas: {{ $svc.replicas }}
  {{- end }}
  revisionHistoryLimit: 5
  selector:
    matchLabels:
      {{- include "mailpipe.selectorLabels" $ctx | nindent 6 }}
  strategy:
    type: RollingUpdate
    rollingUpdate:
      maxUnavailable: 0
      maxSurge: 1
  template:
    metadata:
      labels:
        {{- include "mailpipe.selectorLabels" $ctx | nindent 8 }}
        {{- with $root.Values.podLabels }}
        {{- toYaml . | nindent 8 }}
        {{- end }}
      annotations:
        checksum/config: {{ include (print $root.Template.BasePath "/configmap.yaml") $root | sha256sum }}
        {{- with $root.Values.podAnnotations }}
        {{- toYaml . | nindent 8 }}
        {{- end }}
        {{- with $svc.podAnnotations }}
        {{- toYaml . | nindent 8 }}
        {{- end }}
    spec:
      serviceAccountName: {{ include "mailpipe.serviceAccountName" $root }}
      automountServiceAccountToken: false
      {{- with $root.Values.imagePullSecrets }}
      imagePullSecrets:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      {{- with $root.Values.priorityClassName }}
      priorityClassName: {{ . }}
      {{- end }}
      terminationGracePeriodSeconds: {{ $svc.terminationGracePeriodSeconds | default 60 }}
      securityContext:
        {{- include "mailpipe.podSecurityContext" $root | nindent 8 }}
      containers:
        - name: {{ $name }}
          image: {{ include "mailpipe.image" (dict "root" $root "binary" $svc.binary) }}
          imagePullPolicy: {{ $root.Values.image.pullPolicy }}
          {{- with $svc.args }}
          args:
            {{- toYaml . | nindent 12 }}
          {{- end }}
          ports:
            - name: admin
              containerPort: 9090
              protocol: TCP
            {{- if eq $name "ingress" }}
            - name: smtp
              containerPort: 2525
              protocol: TCP
            {{- if $svc.http.enabled }}
            - name: http
              containerPort: 8080
              protocol: TCP
            {{- end }}
            {{- end }}
          envFrom:
            - configMapRef:
                name: {{ include "mailpipe.fullname" $root }}-config
            {{- with include "mailpipe.envFromSecrets" $ctx | trim }}
            {{- . | nindent 12 }}
            {{- end }}
            {{- with $svc.extraEnvFrom }}
            {{- toYaml . | nindent 12 }}
            {{- end }}
          env:
            - name: MAILPIPE_ADMIN_ADDR
              value: ":9090"
            - name: OTEL_SERVICE_NAME
              value: {{ $name | quote }}
            - name: K8S_POD_NAME
              valueFrom:
                fieldRef:
                  fieldPath: metadata.name
            - name: OTEL_RESOURCE_ATTRIBUTES
              value: "k8s.pod.name=$(K8S_POD_NAME),k8s.namespace.name={{ $root.Release.Namespace }},service.version={{ default $root.Chart.AppVersion $root.Values.image.tag }}"
            {{- if $root.Values.kafka.tls.caSecret }}
            - name: MAILPIPE_KAFKA_TLS_CA
              value: /etc/mailpipe/kafka-ca/ca.crt
            {{- end }}
            {{- if eq $name "ingress" }}
            - name: MAILPIPE_SMTP_ADDR
              value: ":2525"
            - name: MAILPIPE_HTTP_ADDR
              value: {{ ternary ":8080" "" $svc.http.enabled | quote }}
            {{- if $svc.smtpTLS.secretName }}
            - name: MAILPIPE_SMTP_TLS_CERT_FILE
              value: /etc/mailpipe/smtp-tls/tls.crt
            - name: MAILPIPE_SMTP_TLS_KEY_FILE
              value: /etc/mailpipe/smtp-tls/tls.key
            {{- end }}
            {{- end }}
            {{- if and (eq $name "crm-sink") $root.Values.secrets.salesforceKey.existingSecret }}
            - name: MAILPIPE_CRM_SALESFORCE_PRIVATE_KEY_FILE
              value: /etc/mailpipe/salesforce/{{ $root.Values.secrets.salesforceKey.key }}
            {{- end }}
            {{- range $k, $v := $svc.env }}
            - name: {{ $k }}
              value: {{ $v | toString | quote }}
            {{- end }}
          livenessProbe:
            httpGet:
              path: /healthz
              port: admin
            initialDelaySeconds: 10
            periodSeconds: 10
            timeoutSeconds: 3
            failureThreshold: 6
          readinessProbe:
            httpGet:
              path: /readyz
              port: admin
            periodSeconds: 5
            timeoutSeconds: 3
            failureThreshold: 3
          startupProbe:
            httpGet:
              path: /healthz
              port: admin
            periodSeconds: 5
            timeoutSeconds: 3
            failureThreshold: 24
          resources:
            {{- toYaml $svc.resources | nindent 12 }}
          securityContext:
            {{- include "mailpipe.containerSecurityContext" $root | nindent 12 }}
          volumeMounts:
            - name: tmp
              mountPath: /tmp
            {{- if $root.Values.kafka.tls.caSecret }}
            - name: kafka-ca
              mountPath: /etc/mailpipe/kafka-ca
              readOnly: true
            {{- end }}
            {{- if and (eq $name "ingress") $svc.smtpTLS.secretName }}
            - name: smtp-tls
              mountPath: /etc/mailpipe/smtp-tls
              readOnly: true
            {{- end }}
            {{- if and (eq $name "crm-sink") $root.Values.secrets.salesforceKey.existingSecret }}
            - name: salesforce-key
              mountPath: /etc/mailpipe/salesforce
              readOnly: true
            {{- end }}
            {{- with $svc.extraVolumeMounts }}
            {{- toYaml . | nindent 12 }}
            {{- end }}
      volumes:
        - name: tmp
          emptyDir:
            sizeLimit: {{ $svc.tmpSizeLimit | default "1Gi" }}
        {{- if $root.Values.kafka.tls.caSecret }}
        - name: kafka-ca
          secret:
            secretName: {{ $root.Values.kafka.tls.caSecret }}
            items:
              - key: {{ $root.Values.kafka.tls.caKey }}
                path: ca.crt
        {{- end }}
        {{- if and (eq $name "ingress") $svc.smtpTLS.secretName }}
        - name: smtp-tls
          secret:
            secretName: {{ $svc.smtpTLS.secretName }}
        {{- end }}
        {{- if and (eq $name "crm-sink") $root.Values.secrets.salesforceKey.existingSecret }}
        - name: salesforce-key
          secret:
            secretName: {{ $root.Values.secrets.salesforceKey.existingSecret }}
        {{- end }}
        {{- with $svc.extraVolumes }}
        {{- toYaml . | nindent 8 }}
        {{- end }}
      {{- with (default $root.Values.nodeSelector $svc.nodeSelector) }}
      nodeSelector:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      {{- with (default $root.Values.tolerations $svc.tolerations) }}
      tolerations:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      {{- with (default $root.Values.affinity $svc.affinity) }}
      affinity:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      {{- with $svc.topologySpreadConstraints }}
      topologySpreadConstraints:
        {{- tpl (toYaml .) $root | nindent 8 }}
      {{- end }}
{{- end -}}
